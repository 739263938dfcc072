import { inspect } from 'node:util';

import {
  type ColumnDataType,
  type Kysely,
  type Migration,
  type MigrationProvider,
  Migrator,
  PostgresAdapter,
  sql,
  SqliteAdapter,
} from 'kysely';

/*
 * Versioned schema migrations, kept in code (not files read at runtime) so the build ships them and
 * their order is explicit. Rules: never edit a migration that has shipped; add `0002_…`, `0003_…`.
 * Names sort lexically, so keep the four-digit prefix.
 *
 * Migrations see `Kysely<unknown>`: they must not depend on the current `Database` type, which
 * describes the schema after the *last* migration.
 *
 * One set of migrations serves both dialects. Column types come from `columnTypes(db)`: on SQLite they are exactly
 * what these migrations always created (so a shipped SQLite file needs nothing new); on Postgres epoch-ms columns
 * are `bigint` (int4 would overflow), JSON columns `jsonb`, floats `double precision`, and the attempt log's id an
 * identity column.
 */

interface ColumnTypes {
  epochMs: ColumnDataType;
  json: ColumnDataType;
  float: ColumnDataType;
  postgres: boolean;
}

export const isPostgres = (db: Kysely<unknown>): boolean => db.getExecutor().adapter instanceof PostgresAdapter;

function columnTypes(db: Kysely<unknown>): ColumnTypes {
  return isPostgres(db)
    ? { epochMs: 'bigint', json: 'jsonb', float: 'double precision', postgres: true }
    : { epochMs: 'integer', json: 'text', float: 'real', postgres: false };
}

/** A JSON column as the driver hands it back: text on SQLite, already parsed from jsonb on Postgres. */
const parsedJson = (column: unknown): unknown => (typeof column === 'string' ? JSON.parse(column) : column);

const initial: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    const { epochMs, json, float, postgres } = columnTypes(db);
    await db.schema
      .createTable('videos')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('client_id', 'text', (c) => c.notNull())
      .addColumn('upstream_id', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('upstream_state', 'text')
      .addColumn('request_json', json, (c) => c.notNull())
      .addColumn('result_json', json)
      .addColumn('failure_json', json)
      .addColumn('estimated_wait_seconds', float)
      .addColumn('created_at', epochMs, (c) => c.notNull())
      .addColumn('updated_at', epochMs, (c) => c.notNull())
      .addColumn('completed_at', epochMs)
      .addColumn('next_poll_at', epochMs)
      .addColumn('poll_attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('not_found_since', epochMs)
      .addColumn('lease_until', epochMs)
      .addColumn('version', 'integer', (c) => c.notNull().defaultTo(1))
      .addCheckConstraint('videos_status_check', sql`status in ('queued', 'processing', 'completed', 'failed')`)
      .execute();
    // GET /videos: a client's videos newest first (ids are time-sortable ULIDs).
    await db.schema.createIndex('videos_client_id_idx').on('videos').columns(['client_id', 'id desc']).execute();
    // The poller's claim: only running rows are indexed, so the index stays small however many videos finished.
    await db.schema
      .createIndex('videos_due_idx')
      .on('videos')
      .columns(['status', 'next_poll_at'])
      .where('status', 'in', ['queued', 'processing'])
      .execute();
    await db.schema.createIndex('videos_upstream_id_key').on('videos').column('upstream_id').unique().execute();

    await db.schema
      .createTable('webhook_deliveries')
      .addColumn('message_id', 'text', (c) => c.primaryKey())
      .addColumn('video_id', 'text', (c) => c.notNull().references('videos.id').onDelete('cascade'))
      .addColumn('client_id', 'text', (c) => c.notNull())
      .addColumn('event_type', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('next_attempt_at', epochMs)
      .addColumn('lease_until', epochMs)
      .addColumn('last_attempt_at', epochMs)
      .addColumn('last_response_status', 'integer')
      .addColumn('last_error', 'text')
      .addColumn('created_at', epochMs, (c) => c.notNull())
      .addColumn('updated_at', epochMs, (c) => c.notNull())
      .addCheckConstraint('webhook_deliveries_status_check', sql`status in ('pending', 'delivering', 'retrying', 'delivered', 'failed')`)
      .execute();
    // The dispatcher's claim of due deliveries.
    await db.schema.createIndex('webhook_deliveries_due_idx').on('webhook_deliveries').columns(['status', 'next_attempt_at']).execute();
    // A video's webhook summary (latest event) and the foreign key's lookups.
    await db.schema.createIndex('webhook_deliveries_video_idx').on('webhook_deliveries').columns(['video_id', 'created_at']).execute();

    await db.schema
      .createTable('delivery_attempts')
      .addColumn('id', postgres ? 'bigint' : 'integer', (c) =>
        postgres ? c.primaryKey().generatedByDefaultAsIdentity() : c.primaryKey().autoIncrement(),
      )
      .addColumn('message_id', 'text', (c) => c.notNull().references('webhook_deliveries.message_id').onDelete('cascade'))
      .addColumn('video_id', 'text', (c) => c.notNull())
      .addColumn('event_type', 'text', (c) => c.notNull())
      .addColumn('attempt', 'integer', (c) => c.notNull())
      .addColumn('at', epochMs, (c) => c.notNull())
      .addColumn('duration_ms', 'integer', (c) => c.notNull())
      .addColumn('response_status', 'integer')
      .addColumn('error', 'text')
      .addColumn('response_excerpt', 'text')
      .execute();
    // GET /videos/{id}/deliveries, newest first.
    await db.schema.createIndex('delivery_attempts_video_idx').on('delivery_attempts').columns(['video_id', 'id desc']).execute();
    // Without it, deleting an outbox row (cascade) would scan every attempt.
    await db.schema.createIndex('delivery_attempts_message_idx').on('delivery_attempts').column('message_id').execute();

    await db.schema
      .createTable('idempotency_keys')
      .addColumn('client_id', 'text', (c) => c.notNull())
      .addColumn('key', 'text', (c) => c.notNull())
      .addColumn('fingerprint', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('response_status', 'integer')
      .addColumn('response_body', 'text')
      .addColumn('response_headers_json', json)
      .addColumn('created_at', epochMs, (c) => c.notNull())
      .addColumn('expires_at', epochMs, (c) => c.notNull())
      .addPrimaryKeyConstraint('idempotency_keys_pk', ['client_id', 'key'])
      .addCheckConstraint('idempotency_keys_state_check', sql`state in ('in_progress', 'completed')`)
      .execute();
    // Purging expired keys.
    await db.schema.createIndex('idempotency_keys_expires_at_idx').on('idempotency_keys').column('expires_at').execute();
  },
};

/**
 * Webhook delivery (DESIGN §3): what the dispatcher needs on each outbox row, and the video's webhook summary.
 * - `payload`: the exact body, snapshotted at the first attempt, so retries and redeliveries are byte-identical;
 * - `target_url` / `target_host`: the callback URL (immutable per video) and its `host[:port]`, which the claim
 *   partitions by so one slow receiver cannot take every dispatcher slot (per-host cap);
 * - `series_start_attempts`: `attempts` when the current retry series began (a redelivery starts a new one);
 * - `videos.webhook_json`: the public webhook summary of the video's latest event, kept in the same transactions
 *   that change delivery state, so every read of a video carries it without a join.
 */
const webhookDelivery: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('webhook_deliveries').addColumn('payload', 'text').execute();
    await db.schema.alterTable('webhook_deliveries').addColumn('target_url', 'text').execute();
    await db.schema.alterTable('webhook_deliveries').addColumn('target_host', 'text').execute();
    await db.schema
      .alterTable('webhook_deliveries')
      .addColumn('series_start_attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema.alterTable('videos').addColumn('webhook_json', 'text').execute();

    // Rows written before this migration (no dispatcher existed to attempt them) learn their target from the
    // video's request, and their video gets a 'pending' summary of its latest event. Plain statements and JS,
    // so this runs unchanged on any dialect.
    const existing = await sql<{
      message_id: string;
      video_id: string;
      request_json: unknown;
      next_attempt_at: number | null;
      created_at: number;
    }>`
      select d.message_id, d.video_id, v.request_json, d.next_attempt_at, d.created_at
      from webhook_deliveries d join videos v on v.id = d.video_id order by d.created_at`.execute(db);
    const latestByVideo = new Map<string, { next_attempt_at: number | null }>();
    for (const row of existing.rows) {
      latestByVideo.set(row.video_id, row);
      const callbackUrl = (parsedJson(row.request_json) as { callbackUrl?: unknown }).callbackUrl;
      if (typeof callbackUrl !== 'string') continue;
      await sql`update webhook_deliveries set target_url = ${callbackUrl}, target_host = ${new URL(callbackUrl).host}
        where message_id = ${row.message_id}`.execute(db);
    }
    for (const [videoId, latest] of latestByVideo) {
      const nextAttemptAt = latest.next_attempt_at === null ? null : new Date(latest.next_attempt_at).toISOString();
      const summary = { status: 'pending', attempts: 0, lastAttemptAt: null, nextAttemptAt, lastResponseStatus: null };
      await sql`update videos set webhook_json = ${JSON.stringify(summary)} where id = ${videoId}`.execute(db);
    }
  },
};

/**
 * The store keeps facts, not the public API's shapes: `videos.webhook_json` (a public `WebhookSummary`, ISO times)
 * becomes raw columns copied from the latest outbox row (status as stored, epoch ms), so an API change never needs
 * a data migration. Existing summaries are converted, then the JSON column is dropped. Schema builder and plain
 * statements only (`bigint` for epoch ms: INTEGER in SQLite, int8 in Postgres), so this runs on any dialect.
 */
const rawWebhookState: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('videos').addColumn('webhook_status', 'text').execute();
    await db.schema.alterTable('videos').addColumn('webhook_attempts', 'integer').execute();
    await db.schema.alterTable('videos').addColumn('webhook_last_attempt_at', 'bigint').execute();
    await db.schema.alterTable('videos').addColumn('webhook_next_attempt_at', 'bigint').execute();
    await db.schema.alterTable('videos').addColumn('webhook_last_response_status', 'integer').execute();

    const summaries = await sql<{ id: string; webhook_json: string }>`
      select id, webhook_json from videos where webhook_json is not null`.execute(db);
    for (const { id, webhook_json } of summaries.rows) {
      // The 0002-era shape, written only by the store from typed values.
      const summary = JSON.parse(webhook_json) as {
        status: string;
        attempts: number;
        lastAttemptAt: string | null;
        nextAttemptAt: string | null;
        lastResponseStatus: number | null;
      };
      const epochMs = (iso: string | null): number | null => (iso === null ? null : Date.parse(iso));
      await sql`update videos set
          webhook_status = ${summary.status},
          webhook_attempts = ${summary.attempts},
          webhook_last_attempt_at = ${epochMs(summary.lastAttemptAt)},
          webhook_next_attempt_at = ${epochMs(summary.nextAttemptAt)},
          webhook_last_response_status = ${summary.lastResponseStatus}
        where id = ${id}`.execute(db);
    }
    await db.schema.alterTable('videos').dropColumn('webhook_json').execute();
  },
};

/**
 * Erasure (DESIGN §2.4): an erased video's row, outbox rows and attempt log are deleted and a tombstone keeps only
 * its id, owner and times. An idempotency key learns which video it answered with (`video_id`), so the key of an
 * erased video is emptied and marked (`erased_at`) instead of replaying content or starting a second generation;
 * existing keys learn their video from the `location` of their stored 202. Retention reads terminal videos by
 * `completed_at` (a partial index: running videos are not in it). Schema builder and plain statements only; epoch-ms
 * columns are `bigint` on every dialect (INTEGER affinity in SQLite, int8 in Postgres), as shipped.
 */
const deleteTombstones: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('video_tombstones')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('client_id', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addColumn('completed_at', 'bigint')
      .addColumn('deleted_at', 'bigint', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('reason', 'text', (c) => c.notNull())
      .addCheckConstraint('video_tombstones_reason_check', sql`reason in ('deleted', 'retention')`)
      .execute();
    await db.schema.alterTable('idempotency_keys').addColumn('video_id', 'text').execute();
    await db.schema.alterTable('idempotency_keys').addColumn('erased_at', 'bigint').execute();
    await db.schema
      .createIndex('idempotency_keys_video_id_idx')
      .on('idempotency_keys')
      .column('video_id')
      .where(sql.ref('video_id'), 'is not', null)
      .execute();
    await db.schema
      .createIndex('videos_completed_at_idx')
      .on('videos')
      .column('completed_at')
      .where(sql.ref('completed_at'), 'is not', null)
      .execute();

    const answered = await sql<{ client_id: string; key: string; response_headers_json: unknown }>`
      select client_id, key, response_headers_json from idempotency_keys
      where state = 'completed' and response_status = 202`.execute(db);
    for (const row of answered.rows) {
      // Written only by the store, from typed values (`{ "content-type", "location": "/videos/vid_…" }`); text in
      // SQLite, already parsed where the column is jsonb.
      const raw = row.response_headers_json;
      const headers: unknown = typeof raw === 'string' ? JSON.parse(raw) : raw;
      const location = typeof headers === 'object' && headers !== null ? (headers as { location?: unknown }).location : undefined;
      const videoId = typeof location === 'string' ? /^\/videos\/([^/?#]+)$/.exec(location)?.[1] : undefined;
      if (videoId === undefined) continue;
      await sql`update idempotency_keys set video_id = ${videoId}
        where client_id = ${row.client_id} and key = ${row.key}`.execute(db);
    }
  },
};

/**
 * Store hardening (issue 13):
 * - a create records its intent before calling the upstream: the video row exists in status `submitting`, without
 *   an upstream id yet (`upstream_id` becomes nullable; the unique index admits any number of nulls);
 * - `idempotency_keys.video_id` (added by 0006) is now set when the intent is recorded, so a key whose request may
 *   have reached the upstream is never taken over by a retry;
 * - `store_heartbeat`: the row `/readyz` writes to prove the store accepts writes.
 *
 * SQLite cannot alter a CHECK or NOT NULL constraint: its table is rebuilt from its own stored definition (so columns
 * added by other migrations survive), with foreign keys off around the migration (src/store/sqlite.ts) as SQLite's
 * documented rebuild procedure requires. Other dialects alter the constraints in place.
 */
const storeHardening: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    const statuses = sql`status in ('queued', 'processing', 'completed', 'failed', 'submitting')`;
    if (db.getExecutor().adapter instanceof SqliteAdapter) {
      await rebuildSqliteVideos(db);
    } else {
      await sql`alter table videos drop constraint videos_status_check`.execute(db);
      await sql`alter table videos add constraint videos_status_check check (${statuses})`.execute(db);
      await sql`alter table videos alter column upstream_id drop not null`.execute(db);
    }
    // `idempotency_keys.video_id` exists since 0006; from now on it is set when the intent is recorded.
    await db.schema
      .createTable('store_heartbeat')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('beat_at', 'bigint', (c) => c.notNull())
      .execute();
  },
};

/** The `videos` table again with `submitting` allowed and a nullable `upstream_id`; rows and indexes kept. */
async function rebuildSqliteVideos(db: Kysely<unknown>): Promise<void> {
  const schema = await sql<{ type: string; name: string; sql: string | null }>`
    select type, name, sql from sqlite_master where tbl_name = 'videos' and sql is not null`.execute(db);
  const table = schema.rows.find((row) => row.type === 'table')?.sql ?? '';
  const rewritten = table
    .replace('CREATE TABLE "videos"', 'CREATE TABLE "videos_rebuilt"')
    .replace('"upstream_id" text not null', '"upstream_id" text')
    .replace(
      "status in ('queued', 'processing', 'completed', 'failed')",
      "status in ('queued', 'processing', 'completed', 'failed', 'submitting')",
    );
  if (!rewritten.includes('"videos_rebuilt"') || rewritten.includes('"upstream_id" text not null') || !rewritten.includes("'submitting'")) {
    throw new Error('0007: the videos table does not have the expected definition; refusing to rebuild it');
  }
  await sql.raw(rewritten).execute(db);
  await sql`insert into videos_rebuilt select * from videos`.execute(db);
  await sql`drop table videos`.execute(db);
  await sql`alter table videos_rebuilt rename to videos`.execute(db);
  for (const index of schema.rows.filter((row) => row.type === 'index')) await sql.raw(index.sql ?? '').execute(db);
}

/** Every migration, old and new, by versioned name. */
export const migrations: Readonly<Record<string, Migration>> = {
  '0001_initial': initial,
  '0002_webhook_delivery': webhookDelivery,
  '0003_raw_webhook_state': rawWebhookState,
  '0006_delete_tombstones': deleteTombstones,
  '0007_store_hardening': storeHardening,
};

const migrationProvider: MigrationProvider = {
  getMigrations: () => Promise.resolve({ ...migrations }),
};

async function currentSchema(db: Kysely<unknown>): Promise<string> {
  const { rows } = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(db);
  const schema = rows[0]?.schema ?? null;
  if (schema === null) throw new Error('database migration (setup) failed: no schema of search_path exists in the database');
  return schema;
}

/**
 * Brings the schema up to date. Returns the names of the migrations it ran (empty when already current).
 * Throws when one fails; Kysely's migrator reports errors in its result instead of throwing.
 */
export async function migrateToLatest<DB>(db: Kysely<DB>): Promise<string[]> {
  // On Postgres, Kysely's migrator takes a session advisory lock (`pg_advisory_lock`) around the run, so replicas
  // starting at once migrate exactly once. Its bookkeeping tables are pinned to the schema the store uses (the first
  // of `search_path`): unpinned, it would take another schema's `kysely_migration` for its own.
  const schema = isPostgres(db as Kysely<unknown>) ? await currentSchema(db as Kysely<unknown>) : undefined;
  const migrator = new Migrator({ db, provider: migrationProvider, ...(schema === undefined ? {} : { migrationTableSchema: schema }) });
  const { error, results = [] } = await migrator.migrateToLatest();
  if (error !== undefined) {
    const failed = results.find((result) => result.status === 'Error')?.migrationName;
    throw new Error(`database migration ${failed ?? '(setup)'} failed: ${error instanceof Error ? error.message : inspect(error)}`, {
      cause: error,
    });
  }
  return results.filter((result) => result.status === 'Success').map((result) => result.migrationName);
}
