import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';

import { claimableStatuses, dueDeliveryIds } from './kysely/delivery-claims.js';
import type { StoreDialect } from './kysely/dialect.js';
import { createKyselyStore } from './kysely/store.js';
import { runningStatusLiterals } from './kysely/video-repository.js';
import { migrateToLatest } from './migrations.js';
import type { Store } from './repositories.js';
import { sqliteDialect } from './sqlite.js';
import type { Database } from './tables.js';

/**
 * Postgres's own statements. Claims select their rows `FOR UPDATE SKIP LOCKED` inside the `UPDATE … RETURNING`, so
 * claimers on other connections (other replicas) pass over rows being leased instead of waiting on them, and a row
 * leased by a committed claim no longer matches (its lease is in the future). The idempotency upsert is SQLite's
 * statement: Postgres accepts it unchanged.
 */
export const postgresDialect: StoreDialect = {
  // jsonb comes back parsed by the driver.
  json: { read: (column): unknown => column },
  isUnavailable: isPostgresUnavailable,

  async claimDueVideoRows(db, now, limit, leaseMs) {
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
          .limit(limit)
          .forUpdate()
          .skipLocked(),
      )
      .returningAll()
      .execute();
    return rows.sort((a, b) => (a.next_poll_at ?? 0) - (b.next_poll_at ?? 0));
  },

  /**
   * Ranks due rows like SQLite (`dueDeliveryIds`; a window function cannot share a query level with `FOR UPDATE`),
   * then locks the chosen rows `SKIP LOCKED`, re-checking that each is still due and free.
   */
  async claimDueDeliveryRows(db, now, options) {
    const rows = await db
      .updateTable('webhook_deliveries')
      .set({ lease_until: now + options.leaseMs })
      .where('message_id', 'in', (eb) =>
        eb
          .selectFrom('webhook_deliveries as locked')
          .select('locked.message_id')
          .where('locked.message_id', 'in', dueDeliveryIds(db, now, options))
          .where('locked.status', 'in', claimableStatuses)
          .where((free) => free.or([free('locked.lease_until', 'is', null), free('locked.lease_until', '<=', now)]))
          .forUpdate()
          .skipLocked(),
      )
      .returningAll()
      .execute();
    return rows.sort((a, b) => (a.next_attempt_at ?? 0) - (b.next_attempt_at ?? 0) || a.message_id.localeCompare(b.message_id));
  },

  /**
   * Under READ COMMITTED two claims running at once would each rank the same due rows (one then skips them all) and
   * count the leases in flight without the other's: a transaction-scoped advisory lock (one per schema) runs delivery
   * claims one at a time across every replica, and each statement after it sees every committed lease. A claim is a
   * few milliseconds, so the queue is short.
   */
  serializeDeliveryClaims(db, claim) {
    return db.transaction().execute(async (trx) => {
      await sql`select pg_advisory_xact_lock(hashtext(current_schema() || '.webhook_deliveries.claim'))`.execute(trx);
      return claim(trx);
    });
  },

  async notify(db, channel, payloads) {
    if (payloads.length === 0) return;
    await sql`select pg_notify(${channel}, payload) from unnest(${[...payloads]}::text[]) as payload`.execute(db);
  },

  atomic: (db, work) => (db.isTransaction ? work(db) : db.transaction().execute(work)),

  claimIdempotencyKey: (db, row, takeover) => sqliteDialect.claimIdempotencyKey(db, row, takeover),
};

export interface PostgresStoreOptions {
  /** `postgres://user[:password]@host[:port]/database[?options=-c search_path=…]` */
  url: string;
  /** Connections in the pool (DATABASE_POOL_SIZE). */
  poolSize: number;
  /** How long a query may wait for a connection, or a new connection to open. Default 5 s. */
  connectionTimeoutMs?: number;
  /** Called with errors of connections (a terminated backend, a cut network); the pool drops the connection. */
  onIdleError?: (error: Error) => void;
  /** Told the names of the migrations this open applied (empty when the schema was current). */
  onMigrated?: (applied: string[]) => void;
}

/**
 * Connection-level failures: the network (refused, reset, unreachable, DNS), Postgres's class 08 (connection
 * exception), 57P01–57P03 (terminated by an administrator, crash, starting up), 53300 (too many connections), and
 * pg's own words for a dropped connection or a pool that could not connect in time. Not constraint violations or
 * bad SQL: those are bugs or conflicts, never "retry later".
 */
const unavailableCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  '57P01',
  '57P02',
  '57P03',
  '53300',
]);
const droppedConnection = /connection terminated|timeout exceeded when trying to connect|not queryable|connection error|connection ended/i;

export function isPostgresUnavailable(error: unknown): boolean {
  if (error instanceof AggregateError) return error.errors.some(isPostgresUnavailable);
  if (!(error instanceof Error)) return false;
  const code: unknown = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (unavailableCodes.has(code) || /^08[0-9A-Z]{3}$/.test(code))) return true;
  return droppedConnection.test(error.message);
}

/** int8 (`bigint`: epoch ms, counts) as JS numbers: every value we store is far below 2^53. */
const INT8_OID = 20;
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary'): ((value: string) => unknown) => {
    if (oid === INT8_OID && format !== 'binary') return (value) => Number(value);
    return pg.types.getTypeParser(oid, format ?? 'text') as (value: string) => unknown;
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/** A Kysely over a `pg` pool on `options.url`, int8 read as numbers. */
export function createPostgresKysely(options: PostgresStoreOptions): Kysely<Database> {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 5_000,
    types,
  });
  // A connection that dies (pg_terminate_backend, a cut network) emits 'error': on the pool while idle, on the client
  // while checked out (its query fails on its own). Either way a listener, so it is never an uncaught crash.
  pool.on('error', (error) => options.onIdleError?.(error));
  pool.on('connect', (client) => client.on('error', (error) => options.onIdleError?.(error)));
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

/** `host:port/database` of a Postgres URL: where it points, without its credentials. */
export function describePostgresUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}:${parsed.port === '' ? '5432' : parsed.port}${parsed.pathname}`;
  } catch {
    return '(an unparseable URL)';
  }
}

/** A connection failure in words: the driver's message, or the codes of an AggregateError (IPv4 and IPv6 refused). */
function connectionProblem(error: unknown): string {
  const codes = (error instanceof AggregateError ? error.errors : [error])
    .map((each: unknown) => (each instanceof Error ? ((each as NodeJS.ErrnoException).code ?? each.message) : String(each)))
    .filter((text) => text !== '');
  return [...new Set(codes)].join(', ') || 'no answer';
}

/** Opens a pool on the database, checks it answers, and brings its schema up to date. */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  const db = createPostgresKysely(options);
  try {
    try {
      await sql`select 1`.execute(db);
    } catch (error) {
      throw new Error(`cannot reach the Postgres database at ${describePostgresUrl(options.url)}: ${connectionProblem(error)}`, {
        cause: error,
      });
    }
    // Not `onMigrated?.(await …)`: an optional call skips evaluating its arguments.
    const applied = await migrateToLatest(db);
    options.onMigrated?.(applied);
    return createKyselyStore(db, postgresDialect);
  } catch (error) {
    await db.destroy();
    throw error;
  }
}
