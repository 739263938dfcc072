import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { Migrator } from 'kysely';
import t from 'tap';

import { migrateToLatest, migrations } from '../src/store/migrations.js';
import { createPostgresKysely } from '../src/store/postgres.js';
import { freshSchema, postgresOrSkip } from './helpers/postgres.js';

const run = promisify(execFile);
const root = new URL('..', import.meta.url);
const allMigrations = Object.keys(migrations).sort();

/** `npm run migrate` as a deploy pipeline runs it. */
async function npmMigrate(databaseUrl: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('npm', ['run', '-s', 'migrate'], {
      cwd: root,
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', DATABASE_URL: databaseUrl },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? 1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

t.test('npm run migrate on SQLite applies the migrations, then finds the schema current', async (t) => {
  const url = `sqlite:${join(t.testdir(), 'gateway.db')}`;
  const first = await npmMigrate(url);
  t.equal(first.code, 0, first.stderr);
  t.match(first.stdout, `applied ${allMigrations.join(', ')}`);
  const second = await npmMigrate(url);
  t.equal(second.code, 0, second.stderr);
  t.match(second.stdout, 'schema already current');
});

const server = await postgresOrSkip(t);
if (server !== null) {
  t.test('five replicas migrating one database at once apply each migration exactly once', async (t) => {
    const { url, pool } = await freshSchema(t, server);
    const migrators = Array.from({ length: 5 }, () => createPostgresKysely({ url, poolSize: 2 }));
    t.teardown(() => Promise.all(migrators.map((db) => db.destroy())));
    const applied = await Promise.all(migrators.map((db) => migrateToLatest(db)));
    const runs = applied.filter((names) => names.length > 0);
    t.equal(runs.length, 1, 'one migrator did the work');
    t.same(runs[0], allMigrations, 'every migration, in order');
    t.same(applied.flat().sort(), allMigrations, 'the others found the schema current');
    const { rows } = await pool.query<{ name: string }>('select name from kysely_migration order by name');
    t.same(
      rows.map((row) => row.name),
      allMigrations,
      'recorded once each',
    );
  });

  t.test('Postgres column types: bigint epoch ms, jsonb JSON, text ids', async (t) => {
    const { url, pool, schema } = await freshSchema(t, server);
    const db = createPostgresKysely({ url, poolSize: 1 });
    t.teardown(() => db.destroy());
    await migrateToLatest(db);
    const { rows } = await pool.query<{ table_name: string; column_name: string; data_type: string }>(
      `select table_name, column_name, data_type from information_schema.columns where table_schema = $1`,
      [schema],
    );
    const typeOf = (table: string, column: string): string | undefined =>
      rows.find((row) => row.table_name === table && row.column_name === column)?.data_type;
    for (const [table, column] of [
      ['videos', 'created_at'],
      ['videos', 'next_poll_at'],
      ['videos', 'lease_until'],
      ['webhook_deliveries', 'next_attempt_at'],
      ['delivery_attempts', 'at'],
      ['idempotency_keys', 'expires_at'],
      ['idempotency_keys', 'erased_at'],
      ['video_tombstones', 'created_at'],
      ['video_tombstones', 'completed_at'],
      ['video_tombstones', 'deleted_at'],
      ['store_heartbeat', 'beat_at'],
    ] as const) {
      t.equal(typeOf(table, column), 'bigint', `${table}.${column}`);
    }
    for (const [table, column] of [
      ['videos', 'request_json'],
      ['videos', 'result_json'],
      ['idempotency_keys', 'response_headers_json'],
    ] as const) {
      t.equal(typeOf(table, column), 'jsonb', `${table}.${column}`);
    }
    t.equal(typeOf('videos', 'id'), 'text');
    t.equal(typeOf('webhook_deliveries', 'message_id'), 'text');
  });

  t.test('0007 alters a Postgres videos table in place: rows kept, submitting allowed, other statuses still refused', async (t) => {
    const { url, pool, schema } = await freshSchema(t, server);
    const db = createPostgresKysely({ url, poolSize: 1 });
    t.teardown(() => db.destroy());
    const upTo0006 = new Migrator({
      db,
      migrationTableSchema: schema,
      provider: {
        getMigrations: () => Promise.resolve(Object.fromEntries(Object.entries(migrations).filter(([name]) => name < '0007'))),
      },
    });
    const first = await upTo0006.migrateToLatest();
    t.equal(first.error, undefined, 'migrated to 0006');
    await pool.query(
      `insert into videos (id, client_id, upstream_id, status, request_json, created_at, updated_at)
       values ('vid_OLD', 'alice', 'up_OLD', 'queued', '{"prompt":"kept"}', 1, 1)`,
    );
    await pool.query(
      `insert into webhook_deliveries (message_id, video_id, client_id, event_type, status, created_at, updated_at)
       values ('msg_OLD', 'vid_OLD', 'alice', 'video.completed', 'pending', 1, 1)`,
    );
    await pool.query(`insert into idempotency_keys (client_id, key, fingerprint, state, created_at, expires_at, video_id)
       values ('alice', 'k', 'f', 'completed', 1, 2, 'vid_OLD')`);

    t.same(await migrateToLatest(db), ['0007_store_hardening']);
    const kept = await pool.query<{ id: string; status: string }>('select id, status from videos');
    t.same(kept.rows, [{ id: 'vid_OLD', status: 'queued' }], 'the existing video is kept');
    const deliveries = await pool.query('select message_id from webhook_deliveries');
    t.equal(deliveries.rowCount, 1, 'its delivery is kept');
    await pool.query(
      `insert into videos (id, client_id, upstream_id, status, request_json, created_at, updated_at)
       values ('vid_NEW', 'alice', null, 'submitting', '{}', 2, 2)`,
    );
    t.pass('a submitting row without an upstream id is accepted');
    await t.rejects(
      pool.query(
        `insert into videos (id, client_id, upstream_id, status, request_json, created_at, updated_at)
         values ('vid_BAD', 'alice', 'up_BAD', 'bogus', '{}', 3, 3)`,
      ),
      { code: '23514' },
      'the status check still refuses an unknown status',
    );
    await pool.query(`insert into store_heartbeat (id, beat_at) values ('readiness', ${Date.now()})`);
    t.pass('the heartbeat table takes epoch ms');
  });

  t.test('npm run migrate on Postgres applies, then finds the schema current', async (t) => {
    const { url } = await freshSchema(t, server);
    const first = await npmMigrate(url);
    t.equal(first.code, 0, first.stderr);
    t.match(first.stdout, `Postgres 127.0.0.1:5432/test: applied ${allMigrations.join(', ')}`);
    const second = await npmMigrate(url);
    t.equal(second.code, 0, second.stderr);
    t.match(second.stdout, 'schema already current');
  });
}
