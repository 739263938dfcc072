import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, sql, SqliteDialect } from 'kysely';
import t, { type Test } from 'tap';

import type { WebhookSummary } from '../schemas/video.js';
import { migrateToLatest, migrations } from '../src/store/migrations.js';
import type { Store } from '../src/store/repositories.js';
import { openSqliteStore } from '../src/store/sqlite.js';
import type { Database } from '../src/store/tables.js';
import { toVideo } from '../src/videos/present.js';
import { assertDisjointCover, newVideo, seedDue, storeContract, T0 } from './helpers/store-contract.js';

/** Every repository behaves as the contract says, on a fresh SQLite file per test. */
storeContract('SQLite', async (t) => {
  const path = join(t.testdir(), 'gateway.db');
  const inspect = new Kysely<Database>({
    // Opened at the first query, once a store has created the file.
    dialect: new SqliteDialect({ database: async () => new BetterSqlite3(path, { readonly: true }) }),
  });
  t.teardown(() => inspect.destroy());
  return {
    inspect,
    async open() {
      const store = await openSqliteStore({ path });
      t.teardown(() => store.close());
      return store;
    },
  };
});

// What is SQLite's own: the file, its pragmas, its migrations lock, several processes on one file.

const LEASE_MS = 30_000;

async function openStore(t: Test, path: string): Promise<Store> {
  const store = await openSqliteStore({ path });
  t.teardown(() => store.close());
  return store;
}

/** A second, raw connection on the same file: what an operator (or another process) sees. */
function inspect(t: Test, path: string): BetterSqlite3.Database {
  const raw = new BetterSqlite3(path, { readonly: true });
  t.teardown(() => raw.close());
  return raw;
}

const storeModule = new URL('../src/store/sqlite.ts', import.meta.url).href;

interface NodeRun {
  /** Resolves once the child wrote `ready` on stderr. */
  ready: Promise<void>;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** Runs an ES module snippet in a fresh Node process (TypeScript via tsx). */
function runNode(code: string, env: Record<string, string>): NodeRun {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: new URL('..', import.meta.url),
    env: { ...process.env, ...env, STORE_MODULE: storeModule },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let markReady = (): void => {};
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    if (stderr.includes('ready\n')) markReady();
  });
  const done = new Promise<Awaited<NodeRun['done']>>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (exitCode, signal) => {
      markReady();
      resolve({ code: exitCode, signal, stdout, stderr: stderr.replace('ready\n', '') });
    });
  });
  return { ready, done };
}

t.test('migrations', async (t) => {
  const path = join(t.testdir(), 'nested', 'dir', 'gateway.db');
  const first = await openSqliteStore({ path });
  t.ok(existsSync(path), 'creates the parent directory and the file');
  await first.videos.insert(newVideo());
  await first.close();

  const second = await openStore(t, path);
  t.equal(await second.videos.countRunning(), 1, 'reopening keeps the data: migrations ran once');

  const raw = inspect(t, path);
  const applied = raw.prepare('select name from kysely_migration order by name').all() as Array<{ name: string }>;
  t.same(
    applied.map((row) => row.name),
    ['0001_initial', '0002_webhook_delivery', '0003_raw_webhook_state', '0006_delete_tombstones', '0007_store_hardening'],
  );
  t.equal(raw.pragma('journal_mode', { simple: true }), 'wal', 'the file is in WAL mode');
  const tables = (raw.prepare("select name from sqlite_master where type = 'table' order by name").all() as Array<{ name: string }>).map(
    (r) => r.name,
  );
  for (const table of ['videos', 'webhook_deliveries', 'delivery_attempts', 'idempotency_keys', 'video_tombstones'])
    t.ok(tables.includes(table), `${table} exists`);
  const indexes = (raw.prepare("select name from sqlite_master where type = 'index'").all() as Array<{ name: string }>).map((r) => r.name);
  for (const index of [
    'videos_client_id_idx',
    'videos_due_idx',
    'videos_upstream_id_key',
    'webhook_deliveries_due_idx',
    'delivery_attempts_video_idx',
    'idempotency_keys_expires_at_idx',
    'idempotency_keys_video_id_idx',
    'videos_completed_at_idx',
  ]) {
    t.ok(indexes.includes(index), `${index} exists`);
  }
  const plan = raw
    .prepare(
      "explain query plan select id from videos where status in ('queued', 'processing') and next_poll_at <= ? order by next_poll_at limit 5",
    )
    .all(T0) as Array<{ detail: string }>;
  t.match(plan.map((row) => row.detail).join('\n'), /videos_due_idx/, 'the due-rows query can use the partial index');
  const retentionPlan = raw
    .prepare(
      "explain query plan select id from videos where completed_at <= ? and status in ('completed', 'failed') order by completed_at limit 100",
    )
    .all(T0) as Array<{ detail: string }>;
  t.match(retentionPlan.map((row) => row.detail).join('\n'), /videos_completed_at_idx/, 'retention reads terminal videos by index');

  const memory = await openStore(t, ':memory:');
  await memory.ping();
  t.pass(':memory: works');
});

t.test('migrateToLatest reports nothing to do on a current schema', async (t) => {
  const path = join(t.testdir(), 'gateway.db');
  await (await openSqliteStore({ path })).close();
  const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: new BetterSqlite3(path) }) });
  t.teardown(() => db.destroy());
  t.same(await migrateToLatest(db), []);
});

t.test('0003 turns the webhook summaries stored under 0002 into raw columns: every public summary survives', async (t) => {
  const path = join(t.testdir(), 'gateway.db');
  const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: new BetterSqlite3(path) }) });
  const upTo0002 = Object.fromEntries(Object.entries(migrations).filter(([name]) => name < '0003'));
  const migrated = await new Migrator({ db, provider: { getMigrations: async () => upTo0002 } }).migrateToLatest();
  t.same(
    migrated.results?.map((result) => result.migrationName),
    ['0001_initial', '0002_webhook_delivery'],
  );

  const iso = (ms: number): string => new Date(ms).toISOString();
  // As the 0002 store wrote them (and as 0002 itself did for rows it backfilled).
  const summaries: Record<string, WebhookSummary | null> = {
    vid_01JDXYZ8M6X1ZP3V9R4QMIG001: {
      status: 'retrying',
      attempts: 2,
      lastAttemptAt: iso(T0 + 5_000),
      nextAttemptAt: iso(T0 + 65_000),
      lastResponseStatus: 503,
    },
    vid_01JDXYZ8M6X1ZP3V9R4QMIG002: {
      status: 'delivered',
      attempts: 1,
      lastAttemptAt: iso(T0 + 7_123),
      nextAttemptAt: null,
      lastResponseStatus: 204,
    },
    vid_01JDXYZ8M6X1ZP3V9R4QMIG003: {
      status: 'pending',
      attempts: 0,
      lastAttemptAt: null,
      nextAttemptAt: iso(T0 + 1_000),
      lastResponseStatus: null,
    },
    vid_01JDXYZ8M6X1ZP3V9R4QMIG004: {
      status: 'failed',
      attempts: 8,
      lastAttemptAt: iso(T0 + 9_999),
      nextAttemptAt: null,
      lastResponseStatus: 410,
    },
    vid_01JDXYZ8M6X1ZP3V9R4QMIG005: null,
  };
  const request = JSON.stringify(newVideo().request);
  for (const [id, summary] of Object.entries(summaries)) {
    await sql`insert into videos (id, client_id, upstream_id, status, request_json, created_at, updated_at, webhook_json)
      values (${id}, 'client_a', ${`up-${id}`}, 'completed', ${request}, ${T0}, ${T0}, ${summary === null ? null : JSON.stringify(summary)})`.execute(
      db,
    );
  }
  await db.destroy();

  const store = await openStore(t, path);
  for (const [id, summary] of Object.entries(summaries)) {
    const record = await store.videos.get(id);
    if (record === undefined) throw new Error(`${id} is gone`);
    t.same(toVideo(record).webhook, summary, `${id}: the same public summary`);
  }
  t.same(
    (await store.videos.get('vid_01JDXYZ8M6X1ZP3V9R4QMIG001'))?.webhook,
    { status: 'retrying', attempts: 2, lastAttemptAt: T0 + 5_000, nextAttemptAt: T0 + 65_000, lastResponseStatus: 503 },
    'kept as raw state, epoch ms',
  );
  const columns = (inspect(t, path).prepare('select name from pragma_table_info(?)').all('videos') as Array<{ name: string }>).map(
    (c) => c.name,
  );
  t.notOk(columns.includes('webhook_json'), 'the public-shaped column is gone');
});

t.test('0006 teaches keys stored before it which video they created, so erasing that video empties its key', async (t) => {
  const path = join(t.testdir(), 'gateway.db');
  const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: new BetterSqlite3(path) }) });
  const upTo0003 = Object.fromEntries(Object.entries(migrations).filter(([name]) => name < '0004'));
  await new Migrator({ db, provider: { getMigrations: async () => upTo0003 } }).migrateToLatest();
  const video = newVideo({ request: { ...newVideo().request, prompt: 'Stored before 0006' } });
  await sql`insert into videos (id, client_id, upstream_id, status, request_json, created_at, updated_at)
    values (${video.id}, ${video.clientId}, ${video.upstreamId}, 'queued', ${JSON.stringify(video.request)}, ${T0}, ${T0})`.execute(db);
  const key = (name: string, status: number | null, body: string | null, headers: string | null, state = 'completed') =>
    sql`insert into idempotency_keys (client_id, key, fingerprint, state, response_status, response_body, response_headers_json,
        created_at, expires_at)
      values (${video.clientId}, ${name}, 'fp', ${state}, ${status}, ${body}, ${headers}, ${T0}, ${T0 + 86_400_000})`.execute(db);
  await key('created', 202, '{"prompt":"Stored before 0006"}', JSON.stringify({ location: `/videos/${video.id}` }));
  await key('refused', 422, '{"code":"upstream_rejected"}', JSON.stringify({ 'content-type': 'application/problem+json' }));
  await key('running', null, null, null, 'in_progress');
  await db.destroy();

  const store = await openStore(t, path);
  const raw = inspect(t, path);
  const videoIds = raw.prepare('select key, video_id from idempotency_keys order by key').all();
  t.same(videoIds, [
    { key: 'created', video_id: video.id },
    { key: 'refused', video_id: null },
    { key: 'running', video_id: null },
  ]);
  t.ok(await store.videos.erase(video.clientId, video.id, T0 + 1_000));
  const keys = raw.prepare('select key, fingerprint, response_body, erased_at from idempotency_keys order by key').all();
  t.same(keys, [
    { key: 'created', fingerprint: '', response_body: null, erased_at: T0 + 1_000 },
    { key: 'refused', fingerprint: 'fp', response_body: '{"code":"upstream_rejected"}', erased_at: null },
    { key: 'running', fingerprint: 'fp', response_body: null, erased_at: null },
  ]);
});

t.test('0007 rebuilds videos for the submitting state without losing a row, an index or a delivery', async (t) => {
  const path = join(t.testdir(), 'gateway.db');
  const raw = new BetterSqlite3(path);
  raw.pragma('foreign_keys = ON');
  const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: raw }) });
  const before0007 = Object.fromEntries(Object.entries(migrations).filter(([name]) => name < '0007'));
  await new Migrator({ db, provider: { getMigrations: async () => before0007 } }).migrateToLatest();
  const request = JSON.stringify(newVideo().request);
  await sql`insert into videos (id, client_id, upstream_id, status, request_json, created_at, updated_at)
    values ('vid_1', 'client_a', 'up-1', 'completed', ${request}, ${T0}, ${T0})`.execute(db);
  await sql`insert into webhook_deliveries (message_id, video_id, client_id, event_type, status, created_at, updated_at)
    values ('msg_1', 'vid_1', 'client_a', 'video.completed', 'delivered', ${T0}, ${T0})`.execute(db);
  await sql`insert into delivery_attempts (message_id, video_id, event_type, attempt, at, duration_ms)
    values ('msg_1', 'vid_1', 'video.completed', 1, ${T0}, 12)`.execute(db);
  await db.destroy();

  const store = await openStore(t, path);
  t.equal((await store.videos.get('vid_1'))?.upstreamId, 'up-1', 'the video is kept');
  t.equal((await store.deliveries.listAttempts('vid_1', 10)).length, 1, 'its deliveries and attempts are not cascaded away');
  t.ok(await store.videos.recordSubmission({ id: 'vid_2', clientId: 'client_a', request: newVideo().request, createdAt: T0 }));
  t.match(await store.videos.get('vid_2'), { status: 'queued', submitting: true, upstreamId: '' }, 'a submitting row is allowed');
  const check = inspect(t, path);
  const indexes = (
    check.prepare("select name from sqlite_master where type = 'index' and tbl_name = 'videos' and sql is not null").all() as Array<{
      name: string;
    }>
  ).map((row) => row.name);
  t.same(indexes.sort(), ['videos_client_id_idx', 'videos_completed_at_idx', 'videos_due_idx', 'videos_upstream_id_key']);
  t.same(check.pragma('foreign_key_check'), [], 'no dangling reference');
});

t.test('two processes racing on one file never claim one row twice', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'gateway.db');
  const seeder = await openSqliteStore({ path });
  const ids = await seedDue(seeder, 400);
  await seeder.close();
  const go = join(dir, 'go');
  // Both processes wait for the `go` file so that their claim loops overlap.
  const claimer = `
    import { existsSync } from 'node:fs';
    const { openSqliteStore } = await import(process.env.STORE_MODULE);
    const store = await openSqliteStore({ path: process.env.DB_PATH });
    process.stderr.write('ready\\n');
    while (!existsSync(process.env.GO_FILE)) await new Promise((r) => setTimeout(r, 2));
    const claimed = [];
    for (;;) {
      const batch = await store.videos.claimDue(Number(process.env.NOW), 2, 60000);
      if (batch.length === 0) break;
      for (const video of batch) claimed.push(video.id);
    }
    await store.close();
    process.stdout.write(JSON.stringify(claimed));
  `;
  const env = { DB_PATH: path, GO_FILE: go, NOW: String(T0 + 10_000) };
  const runs = [runNode(claimer, env), runNode(claimer, env)];
  await Promise.all(runs.map((run) => run.ready));
  writeFileSync(go, '');
  const results = await Promise.all(runs.map((run) => run.done));
  for (const result of results) t.equal(result.code, 0, `claimer exited cleanly ${result.stderr}`);
  const batches = results.map((result) => JSON.parse(result.stdout) as string[]);
  t.comment(`claimed per process: ${batches.map((batch) => batch.length).join(' / ')}`);
  assertDisjointCover(t, batches, ids);
});

t.test('crash-restart: a process killed mid-flight loses nothing committed', async (t) => {
  const path = join(t.testdir(), 'gateway.db');
  const crasher = `
    const { openSqliteStore } = await import(process.env.STORE_MODULE);
    const store = await openSqliteStore({ path: process.env.DB_PATH });
    const T0 = Number(process.env.T0);
    const base = {
      clientId: 'client_a', status: 'queued', upstreamState: 'pending', estimatedWaitSeconds: null, result: null, failure: null,
      request: { prompt: 'p', aspectRatio: '16:9', loop: false, model: null, resolution: null, duration: null, keyframes: null,
                 callbackUrl: 'https://example.com/h', webhookEvents: ['video.completed'], metadata: null },
      createdAt: T0, nextPollAt: T0 + 1000,
    };
    await store.videos.insert({ ...base, id: 'vid_CRASH0000000000000000000001', upstreamId: 'up-crash-1' });
    await store.videos.insert({ ...base, id: 'vid_CRASH0000000000000000000002', upstreamId: 'up-crash-2' });
    await store.videos.claimDue(T0 + 1000, 10, 30000);
    await store.videos.applyTransition('vid_CRASH0000000000000000000002', T0 + 2000,
      { status: 'processing', upstreamState: 'dreaming', estimatedWaitSeconds: null, result: null, failure: null }, T0 + 4000, []);
    process.kill(process.pid, 'SIGKILL');
  `;
  const result = await runNode(crasher, { DB_PATH: path, T0: String(T0) }).done;
  t.equal(result.signal, 'SIGKILL', `the process died without closing the store ${result.stderr}`);

  const store = await openStore(t, path);
  t.match(await store.videos.get('vid_CRASH0000000000000000000001'), { status: 'queued', leaseUntil: T0 + 31_000 });
  t.match(await store.videos.get('vid_CRASH0000000000000000000002'), { status: 'processing', leaseUntil: null, nextPollAt: T0 + 4_000 });
  t.same(
    (await store.videos.claimDue(T0 + 5_000, 10, LEASE_MS)).map((video) => video.id),
    ['vid_CRASH0000000000000000000002'],
    'the released video is due at once',
  );
  t.same(
    (await store.videos.claimDue(T0 + 31_000, 10, LEASE_MS)).map((video) => video.id),
    ['vid_CRASH0000000000000000000001'],
    'the one leased by the dead process is due when its lease expires',
  );
});
