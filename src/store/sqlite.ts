import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';

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
  // A local file has no connection to lose (a full or locked disk is left to the store-hardening work).
  isUnavailable: () => false,

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
    return claimed?.created_at;
  },
};

export interface SqliteStoreOptions {
  /** File path, or `:memory:`. The parent directory is created when missing. */
  path: string;
  /** Told the names of the migrations this open applied (empty when the schema was current). */
  onMigrated?: (applied: string[]) => void;
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
async function migrateAtomically(sqlite: BetterSqlite3.Database, db: Kysely<Database>): Promise<string[]> {
  sqlite.exec('BEGIN IMMEDIATE');
  try {
    const applied = await migrateToLatest(db);
    sqlite.exec('COMMIT');
    return applied;
  } catch (error) {
    if (sqlite.inTransaction) sqlite.exec('ROLLBACK');
    throw error;
  }
}

/** Opens (creating when needed) the SQLite database and brings its schema up to date. */
export async function openSqliteStore(options: SqliteStoreOptions): Promise<Store> {
  if (!isInMemory(options.path)) mkdirSync(dirname(resolve(options.path)), { recursive: true });
  const sqlite = new BetterSqlite3(options.path);
  try {
    applyPragmas(sqlite);
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
    // Not `onMigrated?.(await …)`: an optional call skips evaluating its arguments.
    const applied = await migrateAtomically(sqlite, db);
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
