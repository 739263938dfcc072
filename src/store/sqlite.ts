import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect, sql } from 'kysely';
import type { VideoFailure, VideoResult, VideoStatus, WebhookSummary } from '../../schemas/video.js';
import type { Clock } from '../clock.js';
import { migrateToLatest } from './migrations.js';
import * as deliveries from './deliveries.js';
import type {
  ClaimDeliveriesOptions,
  ClaimedDelivery,
  DeliveryAttemptEntry,
  DeliveryAttemptResult,
  RedeliverResult,
} from './delivery-types.js';
import type { Database, IdempotencyKeyRow, NewVideoRow, NewWebhookDeliveryRow, VideoRow } from './schema.js';
import type {
  BeginIdempotentRequest,
  BeginIdempotentResult,
  IdempotencyClaim,
  IdempotencyRecord,
  IdempotentInsert,
  ListVideosQuery,
  StoredResponse,
  NewVideo,
  OutboxEvent,
  PollReschedule,
  VideoRecord,
  VideoRequest,
  VideoStore,
  VideoTransition,
} from './types.js';

const runningStatuses = ['queued', 'processing'] as const satisfies readonly VideoStatus[];
const terminalStatuses = ['completed', 'failed'] as const satisfies readonly VideoStatus[];

const isTerminalStatus = (status: VideoStatus): boolean => status === 'completed' || status === 'failed';

/**
 * `status in ('queued', 'processing')` with the statuses inlined as SQL literals, not bound parameters:
 * only then can SQLite prove the query matches the partial index `videos_due_idx` (it does not compare
 * parameters inside an IN list against the index's WHERE clause). The values are constants.
 */
const runningStatusLiterals = runningStatuses.map((status) => sql.lit(status));

// ---------------------------------------------------------------------------------------------
// Rows ↔ records. Pure; the only place JSON columns are parsed or serialised.
// ---------------------------------------------------------------------------------------------

// JSON columns are written only by this module, from typed values, so reading them back is a cast,
// not a validation.
const parseJson = <T>(text: string): T => JSON.parse(text) as T;
const parseNullableJson = <T>(text: string | null): T | null => (text === null ? null : parseJson<T>(text));
const toNullableJson = (value: unknown): string | null => (value === null || value === undefined ? null : JSON.stringify(value));

export function videoFromRow(row: VideoRow): VideoRecord {
  return {
    id: row.id,
    clientId: row.client_id,
    upstreamId: row.upstream_id,
    status: row.status,
    upstreamState: row.upstream_state,
    request: parseJson<VideoRequest>(row.request_json),
    estimatedWaitSeconds: row.estimated_wait_seconds,
    result: parseNullableJson<VideoResult>(row.result_json),
    failure: parseNullableJson<VideoFailure>(row.failure_json),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    completedAt: row.completed_at,
    nextPollAt: row.next_poll_at,
    pollAttempts: row.poll_attempts,
    notFoundSince: row.not_found_since,
    leaseUntil: row.lease_until,
    // Absent (not null) while the video has no webhook event, so records compare equal to what was inserted.
    ...(row.webhook_json === null ? {} : { webhook: parseJson<WebhookSummary>(row.webhook_json) }),
  };
}

/** A new video starts unpolled, unleased and unchanged since creation. */
export function newVideoRow(video: NewVideo): NewVideoRow {
  return {
    id: video.id,
    client_id: video.clientId,
    upstream_id: video.upstreamId,
    status: video.status,
    upstream_state: video.upstreamState,
    request_json: JSON.stringify(video.request),
    result_json: toNullableJson(video.result),
    failure_json: toNullableJson(video.failure),
    estimated_wait_seconds: video.estimatedWaitSeconds,
    created_at: video.createdAt,
    updated_at: video.createdAt,
    completed_at: null,
    next_poll_at: video.nextPollAt,
    poll_attempts: 0,
    not_found_since: null,
    lease_until: null,
    version: 1,
  };
}

export function idempotencyRecordFromRow(row: IdempotencyKeyRow): IdempotencyRecord {
  const response: StoredResponse | null =
    row.state === 'completed' && row.response_status !== null && row.response_body !== null
      ? {
          status: row.response_status,
          body: row.response_body,
          headers: parseNullableJson<Record<string, string>>(row.response_headers_json) ?? {},
        }
      : null;
  return {
    clientId: row.client_id,
    key: row.key,
    fingerprint: row.fingerprint,
    state: row.state,
    response,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
  };
}

/** An outbox row for one event, due immediately. */
export function newDeliveryRow(video: Pick<VideoRow, 'id' | 'client_id' | 'request_json'>, event: OutboxEvent, now: number): NewWebhookDeliveryRow {
  const target = deliveries.deliveryTarget(video.request_json);
  return {
    message_id: event.messageId,
    video_id: video.id,
    client_id: video.client_id,
    event_type: event.eventType,
    status: 'pending',
    attempts: 0,
    next_attempt_at: now,
    lease_until: null,
    last_attempt_at: null,
    last_response_status: null,
    last_error: null,
    created_at: now,
    updated_at: now,
    payload: null,
    target_url: target.url,
    target_host: target.host,
  };
}

// ---------------------------------------------------------------------------------------------
// The dialect-specific part: claiming due rows under a lease.
// ---------------------------------------------------------------------------------------------

/** Claims due running videos and leases them; the only statement that differs between dialects. */
export type ClaimDueVideoRows = (db: Kysely<Database>, now: number, limit: number, leaseMs: number) => Promise<VideoRow[]>;

/**
 * SQLite: one `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING *`. A single statement is its own
 * transaction and SQLite admits one writer at a time, so the select and the lease write cannot
 * interleave with another claimer, in this process or another one on the same file.
 * (Postgres will select `FOR UPDATE SKIP LOCKED` in the subquery instead.)
 */
export const claimDueVideoRowsSqlite: ClaimDueVideoRows = async (db, now, limit, leaseMs) => {
  const rows = await db
    .updateTable('videos')
    .set((eb) => ({ lease_until: now + leaseMs, version: eb('version', '+', 1) }))
    .where('id', 'in', (eb) =>
      eb
        .selectFrom('videos')
        .select('id')
        .where('status', 'in', runningStatusLiterals)
        .where('next_poll_at', '<=', now)
        .where((free) => free.or([free('lease_until', 'is', null), free('lease_until', '<=', now)]))
        .orderBy('next_poll_at')
        .limit(limit),
    )
    .returningAll()
    .execute();
  // RETURNING gives no order guarantee; hand them back most overdue first.
  return rows.sort((a, b) => (a.next_poll_at ?? 0) - (b.next_poll_at ?? 0));
};

// ---------------------------------------------------------------------------------------------
// The store: dialect-neutral Kysely queries.
// ---------------------------------------------------------------------------------------------

/** Stores the final response of a claimed key; matches no row when the claim was lost. */
async function completeIdempotencyRow(db: Kysely<Database>, claim: IdempotencyClaim, response: StoredResponse): Promise<void> {
  await db
    .updateTable('idempotency_keys')
    .set({
      state: 'completed',
      response_status: response.status,
      response_body: response.body,
      response_headers_json: JSON.stringify(response.headers),
    })
    .where('client_id', '=', claim.clientId)
    .where('key', '=', claim.key)
    .where('state', '=', 'in_progress')
    // A claim taken over after it was judged orphaned belongs to the newer request now.
    .where('created_at', '=', claim.startedAt)
    .execute();
}

/**
 * `VideoStore` over any Kysely dialect; the dialect only supplies how due rows are claimed.
 * (Lives here until the Postgres store arrives; then it moves to its own module.)
 */
export class KyselyVideoStore implements VideoStore {
  constructor(
    protected readonly db: Kysely<Database>,
    private readonly claimDueVideoRows: ClaimDueVideoRows,
    private readonly claimDueDeliveryRows: deliveries.ClaimDueDeliveryRows,
  ) {}

  async insertVideo(video: NewVideo, idempotency?: IdempotentInsert): Promise<VideoRecord> {
    const insert = async (db: Kysely<Database>): Promise<VideoRecord> =>
      videoFromRow(await db.insertInto('videos').values(newVideoRow(video)).returningAll().executeTakeFirstOrThrow());
    if (idempotency === undefined) return insert(this.db);
    // The video and its key's stored answer commit together or not at all.
    return this.db.transaction().execute(async (trx) => {
      const record = await insert(trx);
      await completeIdempotencyRow(trx, idempotency.claim, idempotency.response(record));
      return record;
    });
  }

  async getVideo(id: string): Promise<VideoRecord | undefined> {
    const row = await this.db.selectFrom('videos').selectAll().where('id', '=', id).executeTakeFirst();
    return row === undefined ? undefined : videoFromRow(row);
  }

  async claimDueVideos(now: number, limit: number, leaseMs: number): Promise<VideoRecord[]> {
    if (limit <= 0) return [];
    const rows = await this.claimDueVideoRows(this.db, now, Math.floor(limit), leaseMs);
    return rows.map(videoFromRow);
  }

  async applyTransition(
    id: string,
    now: number,
    transition: VideoTransition,
    nextPollAt: number | null,
    events: OutboxEvent[],
    expectedStatus?: VideoStatus,
  ): Promise<VideoRecord | undefined> {
    const terminal = isTerminalStatus(transition.status);
    if (!terminal && nextPollAt === null) {
      // A running video without a next poll would never be looked at again.
      throw new TypeError(`applyTransition(${id}): a ${transition.status} video needs a nextPollAt`);
    }
    // The state change and its outbox rows commit together or not at all (transactional outbox).
    return this.db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable('videos')
        .set((eb) => ({
          status: transition.status,
          upstream_state: transition.upstreamState,
          estimated_wait_seconds: transition.estimatedWaitSeconds,
          result_json: toNullableJson(transition.result),
          failure_json: toNullableJson(transition.failure),
          updated_at: now,
          completed_at: terminal ? now : null,
          next_poll_at: terminal ? null : nextPollAt,
          lease_until: null,
          poll_attempts: eb('poll_attempts', '+', 1),
          not_found_since: null,
          version: eb('version', '+', 1),
        }))
        .where('id', '=', id)
        // Terminal states never change: a late or contradictory answer matches no row.
        .where('status', 'not in', terminalStatuses)
        // Compare-and-set on the status the caller saw: two pollers racing on one video emit its event once.
        .$if(expectedStatus !== undefined, (query) => query.where('status', '=', expectedStatus ?? 'queued'))
        .returningAll()
        .executeTakeFirst();
      if (row === undefined) return undefined;
      if (events.length > 0) {
        await trx
          .insertInto('webhook_deliveries')
          .values(events.map((event) => newDeliveryRow(row, event, now)))
          .execute();
        // The video's webhook summary now describes the new event ('pending').
        return videoFromRow((await deliveries.refreshWebhookSummary(trx, row.id)) ?? row);
      }
      return videoFromRow(row);
    });
  }

  async reschedulePoll(id: string, now: number, schedule: PollReschedule): Promise<void> {
    const { estimatedWaitSeconds, upstreamState } = schedule;
    await this.db
      .updateTable('videos')
      .set((eb) => ({
        next_poll_at: schedule.nextPollAt,
        poll_attempts: schedule.pollAttempts,
        not_found_since: schedule.notFoundSince,
        lease_until: null,
        version: eb('version', '+', 1),
        ...(upstreamState === undefined ? {} : { upstream_state: upstreamState }),
        ...(estimatedWaitSeconds === undefined
          ? {}
          : {
              estimated_wait_seconds: estimatedWaitSeconds,
              // updated_at tracks what clients can see: it moves only when the estimate really changed.
              // (SET expressions read the row's old values.)
              updated_at: eb
                .case()
                .when('estimated_wait_seconds', 'is distinct from', estimatedWaitSeconds)
                .then(now)
                .else(eb.ref('updated_at'))
                .end(),
            }),
      }))
      .where('id', '=', id)
      .where('status', 'in', runningStatuses)
      .execute();
  }

  async refreshResult(id: string, now: number, result: VideoResult): Promise<VideoRecord | undefined> {
    const row = await this.db
      .updateTable('videos')
      .set((eb) => ({ result_json: JSON.stringify(result), updated_at: now, version: eb('version', '+', 1) }))
      .where('id', '=', id)
      .where('status', '=', 'completed')
      .returningAll()
      .executeTakeFirst();
    return row === undefined ? undefined : videoFromRow(row);
  }

  async listVideos(clientId: string, query: ListVideosQuery): Promise<VideoRecord[]> {
    const { status, beforeId } = query;
    // Served by videos_client_id_idx (client_id, id desc).
    const rows = await this.db
      .selectFrom('videos')
      .selectAll()
      .where('client_id', '=', clientId)
      .$if(status !== undefined, (select) => select.where('status', '=', status ?? 'queued'))
      .$if(beforeId !== undefined, (select) => select.where('id', '<', beforeId ?? ''))
      .orderBy('id', 'desc')
      .limit(Math.max(0, Math.floor(query.limit)))
      .execute();
    return rows.map(videoFromRow);
  }

  async beginIdempotentRequest(request: BeginIdempotentRequest): Promise<BeginIdempotentResult> {
    const { clientId, key, now, staleBefore } = request;
    // Two attempts: a row seen as present by the insert can be deleted (abandoned, pruned) before it is read.
    for (let attempt = 0; attempt < 2; attempt += 1) {
      // One statement, so concurrent requests with one key race on the primary key, not on a read-then-write:
      // exactly one inserts (or takes over an expired / orphaned row); the others get no row back.
      const claimed = await this.db
        .insertInto('idempotency_keys')
        .values({
          client_id: clientId,
          key,
          fingerprint: request.fingerprint,
          state: 'in_progress',
          response_status: null,
          response_body: null,
          response_headers_json: null,
          created_at: now,
          expires_at: request.expiresAt,
        })
        .onConflict((conflict) =>
          conflict
            .columns(['client_id', 'key'])
            .doUpdateSet((eb) => ({
              fingerprint: eb.ref('excluded.fingerprint'),
              state: 'in_progress',
              response_status: null,
              response_body: null,
              response_headers_json: null,
              created_at: eb.ref('excluded.created_at'),
              expires_at: eb.ref('excluded.expires_at'),
            }))
            .where((eb) =>
              eb.or([
                eb('idempotency_keys.expires_at', '<=', now),
                eb.and([eb('idempotency_keys.state', '=', 'in_progress'), eb('idempotency_keys.created_at', '<=', staleBefore)]),
              ]),
            ),
        )
        .returning('created_at')
        .executeTakeFirst();
      if (claimed !== undefined) return { started: true, claim: { clientId, key, startedAt: claimed.created_at } };
      const existing = await this.db
        .selectFrom('idempotency_keys')
        .selectAll()
        .where('client_id', '=', clientId)
        .where('key', '=', key)
        .executeTakeFirst();
      if (existing !== undefined) return { started: false, existing: idempotencyRecordFromRow(existing) };
    }
    throw new Error('idempotency key kept changing under a request; giving up');
  }

  async completeIdempotentRequest(claim: IdempotencyClaim, response: StoredResponse): Promise<void> {
    await completeIdempotencyRow(this.db, claim, response);
  }

  async abandonIdempotentRequest(claim: IdempotencyClaim): Promise<void> {
    await this.db
      .deleteFrom('idempotency_keys')
      .where('client_id', '=', claim.clientId)
      .where('key', '=', claim.key)
      .where('state', '=', 'in_progress')
      .where('created_at', '=', claim.startedAt)
      .execute();
  }

  async pruneIdempotencyKeys(now: number): Promise<number> {
    const result = await this.db.deleteFrom('idempotency_keys').where('expires_at', '<=', now).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async countRunning(): Promise<number> {
    const { count } = await this.db
      .selectFrom('videos')
      .select((eb) => eb.fn.countAll().as('count'))
      .where('status', 'in', runningStatusLiterals)
      .executeTakeFirstOrThrow();
    // SQLite answers a number, Postgres a bigint string.
    return Number(count);
  }

  async getVideoUpstreamIdForClient(clientId: string, videoId: string): Promise<string | undefined> {
    const row = await this.db
      .selectFrom('videos')
      .select('upstream_id')
      .where('id', '=', videoId)
      .where('client_id', '=', clientId)
      .executeTakeFirst();
    return row?.upstream_id;
  }

  // DeliveryStore: the outbox (see deliveries.ts).

  async claimDueDeliveries(now: number, options: ClaimDeliveriesOptions): Promise<ClaimedDelivery[]> {
    if (options.limit <= 0) return [];
    const rows = await this.claimDueDeliveryRows(this.db, now, options);
    return rows.map(deliveries.claimedDeliveryFromRow);
  }

  snapshotDeliveryPayload(messageId: string, payload: string): Promise<string> {
    return deliveries.snapshotDeliveryPayload(this.db, messageId, payload);
  }

  async recordDeliveryAttempt(result: DeliveryAttemptResult): Promise<VideoRecord | undefined> {
    const row = await deliveries.recordDeliveryAttempt(this.db, result);
    return row === undefined ? undefined : videoFromRow(row);
  }

  releaseDelivery(messageId: string, leaseUntil: number): Promise<void> {
    return deliveries.releaseDelivery(this.db, messageId, leaseUntil);
  }

  listDeliveryAttempts(videoId: string, limit: number): Promise<DeliveryAttemptEntry[]> {
    return deliveries.listDeliveryAttempts(this.db, videoId, limit);
  }

  redeliver(videoId: string, now: number): Promise<RedeliverResult> {
    return deliveries.redeliver(this.db, videoId, now, videoFromRow);
  }

  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

export interface SqliteStoreOptions {
  /** File path, or `:memory:`. The parent directory is created when missing. */
  path: string;
  /** Accepted for symmetry with other components; the store takes every time from its callers. */
  clock?: Clock;
}

export class SqliteStore extends KyselyVideoStore {
  constructor(
    db: Kysely<Database>,
    private readonly sqlite: BetterSqlite3.Database,
  ) {
    super(db, claimDueVideoRowsSqlite, deliveries.claimDueDeliveryRowsSqlite);
  }

  override async close(): Promise<void> {
    if (!this.sqlite.open) return;
    await super.close();
    // Kysely closes the handle only if it ever used it; make sure it is closed either way.
    if (this.sqlite.open) this.sqlite.close();
  }
}

const isInMemory = (path: string): boolean => path === ':memory:' || path === '';

/**
 * WAL lets readers run while one writer commits; NORMAL sync is durable across process crashes in WAL
 * mode (only an OS crash can lose the last commits); busy_timeout makes a second process wait for the
 * write lock instead of failing; foreign keys are off by default in SQLite.
 */
function applyPragmas(sqlite: BetterSqlite3.Database): void {
  sqlite.pragma('busy_timeout = 5000');
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('foreign_keys = ON');
}

/**
 * Kysely's SQLite adapter runs migrations outside a transaction and takes no lock (it assumes one
 * process). Holding `BEGIN IMMEDIATE` on the connection around the migrator makes a migration run
 * all-or-nothing (SQLite's DDL is transactional) and makes a second process opening the same file wait,
 * then find the schema current.
 */
async function migrateAtomically(sqlite: BetterSqlite3.Database, db: Kysely<Database>): Promise<void> {
  sqlite.exec('BEGIN IMMEDIATE');
  try {
    await migrateToLatest(db);
    sqlite.exec('COMMIT');
  } catch (error) {
    if (sqlite.inTransaction) sqlite.exec('ROLLBACK');
    throw error;
  }
}

/** Opens (creating when needed) the SQLite database and brings its schema up to date. */
export async function openSqliteStore(options: SqliteStoreOptions): Promise<SqliteStore> {
  if (!isInMemory(options.path)) mkdirSync(dirname(resolve(options.path)), { recursive: true });
  const sqlite = new BetterSqlite3(options.path);
  try {
    applyPragmas(sqlite);
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
    await migrateAtomically(sqlite, db);
    return new SqliteStore(db, sqlite);
  } catch (error) {
    sqlite.close();
    throw error;
  }
}
