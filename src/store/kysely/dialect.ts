import type { Kysely } from 'kysely';

import type { ClaimDeliveriesOptions } from '../records.js';
import type { Database, NewIdempotencyKeyRow, VideoRow, WebhookDeliveryRow } from '../tables.js';

/** How one dialect stores JSON columns. Writing is always JSON text; reading depends on the column type. */
export interface JsonCodec {
  /** A `JsonColumn` value as the driver returns it → the value. */
  read(column: unknown): unknown;
}

/** SQLite (and any dialect storing JSON as text): the driver returns the text. */
export const textJson: JsonCodec = { read: (column): unknown => JSON.parse(String(column)) };

/**
 * The statements that differ between dialects; everything else in `src/store/kysely/` is written once.
 * Each takes the database or a transaction. Times are epoch-ms parameters computed by the callers, so no dialect
 * needs date arithmetic of its own.
 */
export interface StoreDialect {
  json: JsonCodec;
  /**
   * Whether an error means the database cannot be reached or written right now (connection refused, cut or
   * terminated, pool timeout): repositories then throw `StoreUnavailable` instead; any other error passes as is.
   */
  isUnavailable(error: unknown): boolean;
  /**
   * Claims up to `limit` due running videos (`next_poll_at <= now`, lease free or expired), most overdue first,
   * leasing them until `now + leaseMs`; two claimers, in one process or several, never get the same row.
   */
  claimDueVideoRows(db: Kysely<Database>, now: number, limit: number, leaseMs: number): Promise<VideoRow[]>;
  /**
   * Claims due deliveries (`pending` / `retrying`, `next_attempt_at <= now`, lease free or expired), most overdue
   * first, at most `perHostLimit` per receiver and none of `excludeHosts`, leasing them until `now + leaseMs`.
   */
  claimDueDeliveryRows(db: Kysely<Database>, now: number, options: ClaimDeliveriesOptions): Promise<WebhookDeliveryRow[]>;
  /**
   * Runs `claim` (a count of the leases in flight, then `claimDueDeliveryRows`) so that no other delivery claim on
   * the database runs at the same time: the caps computed from leased rows then hold across replicas.
   */
  /**
   * Sends one notification per payload on `channel`, delivered when the surrounding transaction commits (never if it
   * rolls back). SQLite: a no-op.
   */
  notify(db: Kysely<Database>, channel: string, payloads: readonly string[]): Promise<void>;
  /**
   * Runs `work` in a transaction where the dialect needs one for its notifications to be atomic with the write
   * (Postgres, unless `db` is a transaction already); SQLite runs it as is (a single statement is atomic).
   */
  atomic<T>(db: Kysely<Database>, work: (db: Kysely<Database>) => Promise<T>): Promise<T>;
  serializeDeliveryClaims<T>(db: Kysely<Database>, claim: (db: Kysely<Database>) => Promise<T>): Promise<T>;
  /**
   * Inserts `row` (an `in_progress` key), or overwrites the existing row of its `(client_id, key)` when that one
   * expired (`expires_at <= now`) or is `in_progress` since `staleBefore` or earlier without a linked `video_id`
   * (clearing `video_id` on takeover): one statement, so concurrent
   * requests race on the primary key. Returns the claim's `created_at`, or undefined when the existing row stays.
   */
  claimIdempotencyKey(
    db: Kysely<Database>,
    row: NewIdempotencyKeyRow,
    takeover: { now: number; staleBefore: number },
  ): Promise<number | undefined>;
}
