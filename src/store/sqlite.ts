import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';

import { type StoreDialect, textJson } from './kysely/dialect.js';
import { createKyselyStore } from './kysely/store.js';
import { runningStatusLiterals } from './kysely/video-repository.js';
import { migrateToLatest } from './migrations.js';
import type { Store } from './repositories.js';
import type { Database } from './tables.js';

/** Statuses a dispatcher may claim. */
const claimableStatuses = ['pending', 'retrying'] as const;

/**
 * SQLite's own statements. Each claim is one `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING *`: a single
 * statement is its own transaction and SQLite admits one writer at a time, so the select and the lease write cannot
 * interleave with another claimer, in this process or another one on the same file. (Postgres selects
 * `FOR UPDATE SKIP LOCKED` in the subquery instead.)
 */
export const sqliteDialect: StoreDialect = {
  json: textJson,

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

  /**
   * The subquery ranks due rows per receiver (`row_number() over (partition by target_host)`), so a receiver with a
   * thousand overdue events takes at most `perHostLimit` of the batch and the rest goes to the others.
   */
  async claimDueDeliveryRows(db, now, options) {
    const excluded = options.excludeHosts ?? [];
    const perHostLimit = Math.max(1, Math.floor(options.perHostLimit ?? options.limit));
    const due = db
      .selectFrom('webhook_deliveries')
      .select((eb) => [
        'message_id',
        'next_attempt_at',
        eb.fn
          .agg<number>('row_number')
          .over((over) => over.partitionBy('target_host').orderBy('next_attempt_at').orderBy('message_id'))
          .as('host_rank'),
      ])
      .where('status', 'in', claimableStatuses)
      .where('next_attempt_at', '<=', now)
      .where((free) => free.or([free('lease_until', 'is', null), free('lease_until', '<=', now)]))
      .$if(excluded.length > 0, (query) =>
        query.where((eb) => eb.or([eb('target_host', 'is', null), eb('target_host', 'not in', excluded)])),
      );
    const rows = await db
      .updateTable('webhook_deliveries')
      .set({ lease_until: now + options.leaseMs })
      .where('message_id', 'in', (eb) =>
        eb
          .selectFrom(due.as('due'))
          .select('due.message_id')
          .where('due.host_rank', '<=', perHostLimit)
          .orderBy('due.next_attempt_at')
          .limit(Math.floor(options.limit)),
      )
      .returningAll()
      .execute();
    return rows.sort((a, b) => (a.next_attempt_at ?? 0) - (b.next_attempt_at ?? 0) || a.message_id.localeCompare(b.message_id));
  },

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
export async function openSqliteStore(options: SqliteStoreOptions): Promise<Store> {
  if (!isInMemory(options.path)) mkdirSync(dirname(resolve(options.path)), { recursive: true });
  const sqlite = new BetterSqlite3(options.path);
  try {
    applyPragmas(sqlite);
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
    await migrateAtomically(sqlite, db);
    // Kysely closes the handle only if it ever used it; make sure it is closed either way.
    return createKyselyStore(db, sqliteDialect, () => {
      if (sqlite.open) sqlite.close();
    });
  } catch (error) {
    sqlite.close();
    throw error;
  }
}
