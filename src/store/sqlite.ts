import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import BetterSqlite3 from 'better-sqlite3';
import { CompiledQuery, type DatabaseConnection, type Driver, Kysely, SqliteDialect } from 'kysely';

import { StoreUnavailable } from '../errors.js';
import type { Logger } from '../lib/logger.js';
import { dueDeliveryIds } from './kysely/delivery-claims.js';
import { type StoreDialect, textJson } from './kysely/dialect.js';
import { createKyselyStore } from './kysely/store.js';
import { runningStatusLiterals } from './kysely/video-repository.js';
import { migrateToLatest } from './migrations.js';
import type { Store } from './repositories.js';
import type { Database } from './tables.js';

/**
 * SQLite's own statements. Each claim is one `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING *`: a single
 * statement is its own transaction and SQLite admits one writer at a time, so the select and the lease write cannot
 * interleave with another claimer, in this process or another one on the same file. (Postgres selects
 * `FOR UPDATE SKIP LOCKED` in the subquery instead.)
 */
export const sqliteDialect: StoreDialect = {
  json: textJson,
  // A locked, read-only, full, gone or damaged file (the statement guard below already turns most into
  // `StoreUnavailable` after waiting out a lock; this catches any that reach a repository some other way).
  isUnavailable: (error) => isSqliteUnavailable(error),

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
          .limit(limit),
      )
      .returningAll()
      .execute();
    // RETURNING gives no order guarantee; hand them back most overdue first.
    return rows.sort((a, b) => (a.next_poll_at ?? 0) - (b.next_poll_at ?? 0));
  },

  /** One statement: the ranking subquery (`dueDeliveryIds`) and the lease write cannot interleave with another claimer. */
  async claimDueDeliveryRows(db, now, options) {
    const rows = await db
      .updateTable('webhook_deliveries')
      .set({ lease_until: now + options.leaseMs })
      .where('message_id', 'in', dueDeliveryIds(db, now, options))
      .returningAll()
      .execute();
    return rows.sort((a, b) => (a.next_attempt_at ?? 0) - (b.next_attempt_at ?? 0) || a.message_id.localeCompare(b.message_id));
  },

  // No other process listens: nothing to announce, and single statements are atomic already.
  notify: () => Promise.resolve(),
  atomic: (db, work) => work(db),

  // A single process claims one statement at a time already (see above).
  serializeDeliveryClaims: (db, claim) => claim(db),

  // Plain `INSERT … ON CONFLICT DO UPDATE … WHERE`; Postgres accepts the same statement.
  async claimIdempotencyKey(db, row, { now, staleBefore }) {
    const claimed = await db
      .insertInto('idempotency_keys')
      .values(row)
      .onConflict((conflict) =>
        conflict
          .columns(['client_id', 'key'])
          .doUpdateSet((eb) => ({
            fingerprint: eb.ref('excluded.fingerprint'),
            state: 'in_progress',
            response_status: null,
            response_body: null,
            response_headers_json: null,
            video_id: null,
            erased_at: null,
            created_at: eb.ref('excluded.created_at'),
            expires_at: eb.ref('excluded.expires_at'),
          }))
          .where((eb) =>
            eb.or([
              eb('idempotency_keys.expires_at', '<=', now),
              // An orphaned claim is taken over only if its request never recorded a video: one that did may have
              // started a paid generation, and is answered with that video instead (src/videos/create.ts).
              eb.and([
                eb('idempotency_keys.state', '=', 'in_progress'),
                eb('idempotency_keys.created_at', '<=', staleBefore),
                eb('idempotency_keys.video_id', 'is', null),
              ]),
            ]),
          ),
      )
      .returning('created_at')
      .executeTakeFirst();
    return claimed?.created_at;
  },
};

export interface SqliteStoreOptions {
  /** File path, or `:memory:`. The parent directory is created when missing. */
  path: string;
  /** Told the names of the migrations this open applied (empty when the schema was current). */
  onMigrated?: (applied: string[]) => void;
  /** Longest wait for the write lock another process holds, then `StoreUnavailable`. Default 5000. */
  lockWaitMs?: number;
  /** Called each time a statement waits for that lock (metrics, tests). */
  onLockWait?: () => void;
  /** Where a database file deleted or replaced under the running store is reported (error level, once). */
  logger?: Pick<Logger, 'error'>;
}

const isInMemory = (path: string): boolean => path === ':memory:' || path === '';

/**
 * SQLite's own wait for a lock another process holds. It spins inside the synchronous driver call, freezing the
 * event loop, so it stays short; longer waits happen between attempts, asynchronously (`createStatementGuard`).
 */
const syncBusyTimeoutMs = 20;

/**
 * WAL lets readers run while one writer commits; NORMAL sync is durable across process crashes in WAL
 * mode (only an OS crash can lose the last commits); a short busy_timeout absorbs brief lock contention without
 * blocking the event loop for long; foreign keys are off by default in SQLite.
 */
function applyPragmas(sqlite: BetterSqlite3.Database): void {
  sqlite.pragma(`busy_timeout = ${syncBusyTimeoutMs}`);
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
async function migrateAtomically(sqlite: BetterSqlite3.Database, db: Kysely<Database>, lockWaitMs: number): Promise<string[]> {
  // A migration that rebuilds a parent table (0007) must not cascade its DROP to the children: SQLite's rebuild
  // procedure turns foreign keys off around it (a no-op inside a transaction, hence here) and checks them after.
  sqlite.pragma('foreign_keys = OFF');
  // Another process may be migrating (or writing) right now: wait for it without blocking the event loop.
  await createStatementGuard({ lockWaitMs: Math.max(lockWaitMs, 30_000) }).run(async () => void sqlite.exec('BEGIN IMMEDIATE'));
  try {
    const applied = await migrateToLatest(db);
    const violations = sqlite.pragma('foreign_key_check') as unknown[];
    if (violations.length > 0) throw new Error(`database migration left ${violations.length} foreign key violations`);
    sqlite.exec('COMMIT');
    return applied;
  } catch (error) {
    if (sqlite.inTransaction) sqlite.exec('ROLLBACK');
    throw error;
  } finally {
    sqlite.pragma('foreign_keys = ON');
  }
}

/**
 * SQLite result codes that mean the database cannot be read or written right now (locked, read-only, gone, full,
 * damaged): the caller gets `StoreUnavailable` (503 `store_unavailable`). Anything else (a constraint, a bug in a
 * statement) stays what it is.
 */
const unavailableCodes = /^SQLITE_(BUSY|LOCKED|READONLY|IOERR|CANTOPEN|FULL|NOTADB|CORRUPT|PROTOCOL|NOLFS|AUTH|PERM)/;

export const isSqliteUnavailable = (error: unknown): boolean =>
  error instanceof Error && 'code' in error && typeof error.code === 'string' && unavailableCodes.test(error.code);

/** Another connection holds the lock this statement needs: worth another try a little later. */
const isBusy = (error: unknown): boolean =>
  error instanceof Error && 'code' in error && typeof error.code === 'string' && /^SQLITE_BUSY/.test(error.code);

/** What every statement runs through: waits for a busy database asynchronously, and translates driver failures. */
interface StatementGuard {
  run<T>(statement: () => Promise<T>): Promise<T>;
}

interface StatementGuardOptions {
  /** Total wait for a lock, over every attempt; then `StoreUnavailable`. */
  lockWaitMs: number;
  onLockWait?: (() => void) | undefined;
  /** Throws when the database must not be used any more (its file is gone); checked before every statement. */
  assertUsable?: () => void;
}

/**
 * The file the store opened must stay the file at its path. Deleted or replaced (restored from a backup, moved by a
 * deploy), the open handle keeps writing into an inode nobody will read again: every acknowledged write would be lost
 * at the next restart. Compares the path's device and inode with the opened ones (one stat, a few microseconds), and
 * once they differ refuses every statement for good, so readiness fails and writes answer 503.
 */
function createFileIdentityCheck(path: string, logger: Pick<Logger, 'error'> | undefined): () => void {
  const opened = statSync(path);
  let lost: Error | null = null;
  return () => {
    if (lost === null) {
      const current = statSync(path, { throwIfNoEntry: false });
      if (current !== undefined && current.ino === opened.ino && current.dev === opened.dev) return;
      lost = new Error(
        current === undefined
          ? `the database file ${path} was deleted while the gateway had it open`
          : `the database file ${path} was replaced while the gateway had it open (inode ${opened.ino} → ${current.ino})`,
      );
      logger?.error(
        { path, openedInode: opened.ino, currentInode: current?.ino ?? null },
        `${lost.message}: refusing every read and write until restarted (acknowledged writes would be lost)`,
      );
    }
    throw new StoreUnavailable(lost);
  };
}

/** Pause before attempt `n + 1`: 5 ms doubling to 100 ms. */
const lockBackoffMs = (attempt: number): number => Math.min(100, 5 * 2 ** attempt);

/**
 * SQLite answers SQLITE_BUSY once its short synchronous busy_timeout ran out; the statement is tried again after an
 * asynchronous pause (the event loop keeps serving `/healthz`, reads of the cache, SSE), until `lockWaitMs` in all.
 * Safe to repeat: an autocommit statement or a `BEGIN IMMEDIATE` that got SQLITE_BUSY changed nothing, and inside an
 * IMMEDIATE transaction no statement waits for the write lock.
 */
function createStatementGuard(options: StatementGuardOptions): StatementGuard {
  return {
    async run(statement) {
      const startedAt = performance.now();
      for (let attempt = 0; ; attempt += 1) {
        options.assertUsable?.();
        try {
          return await statement();
        } catch (error) {
          const waitedMs = performance.now() - startedAt;
          if (isBusy(error) && waitedMs < options.lockWaitMs) {
            options.onLockWait?.();
            await sleep(Math.min(lockBackoffMs(attempt), options.lockWaitMs - waitedMs));
            continue;
          }
          if (isSqliteUnavailable(error)) throw new StoreUnavailable(error);
          throw error;
        }
      }
    },
  };
}

/**
 * Kysely's SQLite driver with every statement run through the guard, and transactions begun `IMMEDIATE`: the write
 * lock is taken (or refused) at `BEGIN`, where waiting for it and retrying is safe, never by a statement halfway
 * through a transaction.
 */
class GuardedSqliteDialect extends SqliteDialect {
  constructor(
    private readonly database: BetterSqlite3.Database,
    private readonly guard: StatementGuard,
  ) {
    super({ database });
  }

  override createDriver(): Driver {
    const inner = super.createDriver();
    const guard = this.guard;
    const wrapped = new WeakMap<DatabaseConnection, DatabaseConnection>();
    const guarded = (connection: DatabaseConnection): DatabaseConnection => {
      let known = wrapped.get(connection);
      if (known === undefined) {
        known = {
          executeQuery: (query) => guard.run(() => connection.executeQuery(query)),
          streamQuery: (query, chunkSize) => connection.streamQuery(query, chunkSize),
        };
        wrapped.set(connection, known);
      }
      return known;
    };
    const raw = async (connection: DatabaseConnection, statement: string): Promise<void> => {
      await connection.executeQuery(CompiledQuery.raw(statement));
    };
    return {
      init: () => inner.init(),
      acquireConnection: async () => guarded(await inner.acquireConnection()),
      beginTransaction: (connection) => raw(connection, 'BEGIN IMMEDIATE'),
      commitTransaction: (connection) => raw(connection, 'COMMIT'),
      // SQLite may have rolled back on its own (SQLITE_FULL, an I/O error): a second ROLLBACK would hide why.
      rollbackTransaction: async (connection) => {
        if (this.database.inTransaction) await raw(connection, 'ROLLBACK');
      },
      releaseConnection: (connection) => inner.releaseConnection(connection),
      destroy: () => inner.destroy(),
    };
  }
}

/** Opens (creating when needed) the SQLite database and brings its schema up to date. */
export async function openSqliteStore(options: SqliteStoreOptions): Promise<Store> {
  if (!isInMemory(options.path)) mkdirSync(dirname(resolve(options.path)), { recursive: true });
  const sqlite = new BetterSqlite3(options.path);
  try {
    applyPragmas(sqlite);
    const lockWaitMs = options.lockWaitMs ?? 5000;
    const guard = createStatementGuard({
      lockWaitMs,
      onLockWait: options.onLockWait,
      ...(isInMemory(options.path) ? {} : { assertUsable: createFileIdentityCheck(options.path, options.logger) }),
    });
    const db = new Kysely<Database>({ dialect: new GuardedSqliteDialect(sqlite, guard) });
    // Not `onMigrated?.(await …)`: an optional call skips evaluating its arguments.
    const applied = await migrateAtomically(sqlite, db, lockWaitMs);
    options.onMigrated?.(applied);
    // Kysely closes the handle only if it ever used it; make sure it is closed either way.
    return createKyselyStore(db, sqliteDialect, () => {
      if (sqlite.open) sqlite.close();
    });
  } catch (error) {
    sqlite.close();
    throw error;
  }
}
