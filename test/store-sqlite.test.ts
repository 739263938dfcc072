import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import t, { type Test } from 'tap';
import type { VideoResult } from '../schemas/video.js';
import { migrateToLatest } from '../src/store/migrations.js';
import type { WebhookDeliveryRow } from '../src/store/schema.js';
import { openSqliteStore, type SqliteStore } from '../src/store/sqlite.js';
import type { NewVideo, VideoRecord, VideoTransition } from '../src/store/types.js';
import { videoRequest } from './helpers/records.js';

/* Every time is an explicit epoch-ms value: nothing here waits on the real clock. */
const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const LEASE_MS = 30_000;

let sequence = 0;
function newVideo(overrides: Partial<NewVideo> = {}): NewVideo {
  sequence += 1;
  const n = String(sequence).padStart(6, '0');
  return {
    id: `vid_01JDXYZ8M6X1ZP3V9R4Q${n}`,
    clientId: 'client_a',
    upstreamId: `up-${n}`,
    status: 'queued',
    upstreamState: 'pending',
    request: videoRequest({ prompt: 'A serene lake at sunset', callbackUrl: 'https://example.com/hooks' }),
    estimatedWaitSeconds: null,
    result: null,
    failure: null,
    createdAt: T0,
    nextPollAt: T0 + 2_000,
    ...overrides,
  };
}

const sampleResult = (expiresAt = '2026-01-01T01:00:00.000Z'): VideoResult => ({
  video: {
    url: 'https://cdn.example/v.mp4',
    downloadUrl: `https://cdn.example/v.mp4?sig=${expiresAt}`,
    downloadUrlExpiresAt: expiresAt,
    width: 1360,
    height: 752,
    durationSeconds: 5.041667,
  },
  rawVideo: { url: 'https://cdn.example/raw.mp4', width: 1360, height: 752, durationSeconds: null },
  thumbnail: { url: 'https://cdn.example/t.jpg', width: null, height: null },
  lastFrame: null,
});

const processing: VideoTransition = { status: 'processing', upstreamState: 'dreaming', estimatedWaitSeconds: 30, result: null, failure: null };
const completed = (result = sampleResult()): VideoTransition => ({
  status: 'completed',
  upstreamState: 'completed',
  estimatedWaitSeconds: null,
  result,
  failure: null,
});
const failed: VideoTransition = {
  status: 'failed',
  upstreamState: 'failed',
  estimatedWaitSeconds: null,
  result: null,
  failure: { code: 'upstream_failed', message: 'moderation' },
};

async function openStore(t: Test, path: string): Promise<SqliteStore> {
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

const deliveries = (raw: BetterSqlite3.Database, videoId: string): WebhookDeliveryRow[] =>
  raw.prepare('select * from webhook_deliveries where video_id = ? order by message_id').all(videoId) as WebhookDeliveryRow[];

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
  await first.insertVideo(newVideo());
  await first.close();

  const second = await openStore(t, path);
  t.equal(await second.countRunning(), 1, 'reopening keeps the data: migrations ran once');

  const raw = inspect(t, path);
  const applied = raw.prepare('select name from kysely_migration order by name').all() as Array<{ name: string }>;
  t.same(
    applied.map((row) => row.name),
    ['0001_initial', '0002_webhook_delivery'],
  );
  t.equal(raw.pragma('journal_mode', { simple: true }), 'wal', 'the file is in WAL mode');
  const tables = (raw.prepare("select name from sqlite_master where type = 'table' order by name").all() as Array<{ name: string }>).map((r) => r.name);
  for (const table of ['videos', 'webhook_deliveries', 'delivery_attempts', 'idempotency_keys']) t.ok(tables.includes(table), `${table} exists`);
  const indexes = (raw.prepare("select name from sqlite_master where type = 'index'").all() as Array<{ name: string }>).map((r) => r.name);
  for (const index of ['videos_client_id_idx', 'videos_due_idx', 'videos_upstream_id_key', 'webhook_deliveries_due_idx', 'delivery_attempts_video_idx', 'idempotency_keys_expires_at_idx']) {
    t.ok(indexes.includes(index), `${index} exists`);
  }
  const plan = raw
    .prepare(
      "explain query plan select id from videos where status in ('queued', 'processing') and next_poll_at <= ? order by next_poll_at limit 5",
    )
    .all(T0) as Array<{ detail: string }>;
  t.match(plan.map((row) => row.detail).join('\n'), /videos_due_idx/, 'the due-rows query can use the partial index');

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

t.test('insertVideo / getVideo round-trip every field', async (t) => {
  const store = await openStore(t, join(t.testdir(), 'gateway.db'));
  const input = newVideo({
    status: 'processing',
    upstreamState: 'dreaming',
    request: {
      prompt: 'Ünïcode prompt — "quoted" \'single\'',
      aspectRatio: '9:16',
      loop: true,
      model: 'ray-2',
      resolution: '1080p',
      duration: '9s',
      keyframes: { start: { imageUrl: 'https://img.example/a.png' }, end: { videoId: 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC' } },
      callbackUrl: 'https://example.com/hooks?x=1',
      webhookEvents: ['video.processing', 'video.completed', 'video.failed'],
      metadata: { userId: 'u_42', empty: '' },
    },
    estimatedWaitSeconds: 12.5,
    result: sampleResult(),
    failure: { code: 'timed_out', message: 'too slow' },
    createdAt: T0 + 123,
    nextPollAt: T0 + 4_567,
  });
  const expected: VideoRecord = { ...input, updatedAt: T0 + 123, completedAt: null, pollAttempts: 0, notFoundSince: null, leaseUntil: null };

  t.same(await store.insertVideo(input), expected, 'insert returns the stored record');
  t.same(await store.getVideo(input.id), expected, 'get returns it unchanged');
  t.equal(await store.getVideo('vid_unknown'), undefined);

  const minimal = newVideo({ upstreamState: null });
  t.same(await store.getVideo((await store.insertVideo(minimal)).id), {
    ...minimal,
    updatedAt: minimal.createdAt,
    completedAt: null,
    pollAttempts: 0,
    notFoundSince: null,
    leaseUntil: null,
  });

  await t.rejects(store.insertVideo(newVideo({ upstreamId: input.upstreamId })), /UNIQUE/, 'upstream ids are unique');
  await t.rejects(store.insertVideo({ ...newVideo(), id: input.id }), /UNIQUE|PRIMARY/, 'video ids are unique');
});

t.test('claimDueVideos', async (t) => {
  const store = await openStore(t, join(t.testdir(), 'gateway.db'));
  const queued = await store.insertVideo(newVideo({ nextPollAt: T0 + 1_000 }));
  const running = await store.insertVideo(newVideo({ status: 'processing', nextPollAt: T0 + 2_000 }));
  const later = await store.insertVideo(newVideo({ nextPollAt: T0 + 60_000 }));
  // Terminal rows are never claimed, whatever their next_poll_at says.
  await store.insertVideo(newVideo({ status: 'completed', result: sampleResult(), nextPollAt: T0 }));
  await store.insertVideo(newVideo({ status: 'failed', nextPollAt: T0 }));
  await store.insertVideo(newVideo({ nextPollAt: null }));

  const now = T0 + 5_000;
  const claimed = await store.claimDueVideos(now, 10, LEASE_MS);
  t.same(
    claimed.map((video) => video.id),
    [queued.id, running.id],
    'due running rows only, most overdue first',
  );
  t.ok(claimed.every((video) => video.leaseUntil === now + LEASE_MS), 'leased until now + leaseMs');
  t.equal((await store.getVideo(queued.id))?.leaseUntil, now + LEASE_MS, 'the lease is stored');

  t.same(await store.claimDueVideos(now, 10, LEASE_MS), [], 'a leased row is not claimed again');
  t.same(await store.claimDueVideos(now + LEASE_MS - 1, 10, LEASE_MS), [], 'not before the lease expires');
  const reclaimed = await store.claimDueVideos(now + LEASE_MS, 10, LEASE_MS);
  t.same(
    reclaimed.map((video) => video.id),
    [queued.id, running.id],
    'an expired lease is claimed again',
  );
  t.equal(reclaimed[0]?.leaseUntil, now + 2 * LEASE_MS);

  const atLater = await store.claimDueVideos(T0 + 60_000, 10, LEASE_MS);
  t.same(
    atLater.map((video) => video.id),
    [later.id],
    'a row becomes due at next_poll_at',
  );

  t.same(await store.claimDueVideos(T0 + 10 * 60_000, 0, LEASE_MS), [], 'limit 0 claims nothing');
});

t.test('claimDueVideos honours the limit, oldest first', async (t) => {
  const store = await openStore(t, join(t.testdir(), 'gateway.db'));
  const videos: VideoRecord[] = [];
  for (const offset of [500, 100, 400, 200, 300]) videos.push(await store.insertVideo(newVideo({ nextPollAt: T0 + offset })));
  const firstTwo = await store.claimDueVideos(T0 + 1_000, 2, LEASE_MS);
  t.same(
    firstTwo.map((video) => video.nextPollAt),
    [T0 + 100, T0 + 200],
  );
  const rest = await store.claimDueVideos(T0 + 1_000, 10, LEASE_MS);
  t.same(
    rest.map((video) => video.nextPollAt),
    [T0 + 300, T0 + 400, T0 + 500],
  );
});

async function seedDue(store: SqliteStore, count: number): Promise<Set<string>> {
  const ids = new Set<string>();
  for (let i = 0; i < count; i++) ids.add((await store.insertVideo(newVideo({ nextPollAt: T0 + i }))).id);
  return ids;
}

function assertDisjointCover(t: Test, batches: string[][], expected: Set<string>): void {
  const all = batches.flat();
  t.equal(new Set(all).size, all.length, 'no row was claimed twice');
  t.same(new Set(all), expected, 'every due row was claimed once');
}

t.test('concurrent claims never return the same row', async (t) => {
  t.test('one store, many concurrent callers', async (t) => {
    const store = await openStore(t, join(t.testdir(), 'gateway.db'));
    const ids = await seedDue(store, 40);
    const batches = await Promise.all(Array.from({ length: 20 }, () => store.claimDueVideos(T0 + 1_000, 3, LEASE_MS)));
    assertDisjointCover(
      t,
      batches.map((batch) => batch.map((video) => video.id)),
      ids,
    );
  });

  t.test('two stores (two connections) on one file', async (t) => {
    const path = join(t.testdir(), 'gateway.db');
    const a = await openStore(t, path);
    const b = await openStore(t, path);
    const ids = await seedDue(a, 40);
    const batches = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).claimDueVideos(T0 + 1_000, 3, LEASE_MS)));
    assertDisjointCover(
      t,
      batches.map((batch) => batch.map((video) => video.id)),
      ids,
    );
  });

  t.test('two processes racing on one file', async (t) => {
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
        const batch = await store.claimDueVideos(Number(process.env.NOW), 2, 60000);
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
});

t.test('applyTransition', async (t) => {
  const path = join(t.testdir(), 'gateway.db');
  const store = await openStore(t, path);
  const raw = inspect(t, path);
  const video = await store.insertVideo(newVideo({ estimatedWaitSeconds: 60 }));
  await store.claimDueVideos(T0 + 2_000, 1, LEASE_MS);

  const now1 = T0 + 3_000;
  const toProcessing = await store.applyTransition(video.id, now1, processing, now1 + 2_000, [{ messageId: 'msg_A1', eventType: 'video.processing' }]);
  t.same(toProcessing, {
    ...video,
    status: 'processing',
    upstreamState: 'dreaming',
    estimatedWaitSeconds: 30,
    updatedAt: now1,
    completedAt: null,
    nextPollAt: now1 + 2_000,
    pollAttempts: 1,
    notFoundSince: null,
    leaseUntil: null,
    // The new event's delivery, summarised on the video in the same transaction.
    webhook: { status: 'pending', attempts: 0, lastAttemptAt: null, nextAttemptAt: new Date(now1).toISOString(), lastResponseStatus: null },
  });
  t.same(await store.getVideo(video.id), toProcessing, 'stored as returned');
  t.same(deliveries(raw, video.id), [
    {
      message_id: 'msg_A1',
      video_id: video.id,
      client_id: 'client_a',
      event_type: 'video.processing',
      status: 'pending',
      attempts: 0,
      next_attempt_at: now1,
      lease_until: null,
      last_attempt_at: null,
      last_response_status: null,
      last_error: null,
      created_at: now1,
      updated_at: now1,
      payload: null,
      target_url: 'https://example.com/hooks',
      target_host: 'example.com',
      series_start_attempts: 0,
    },
  ]);

  const now2 = T0 + 9_000;
  const result = sampleResult();
  // A terminal transition never keeps a next poll, whatever the caller passes.
  const done = await store.applyTransition(video.id, now2, completed(result), now2 + 1, [{ messageId: 'msg_A2', eventType: 'video.completed' }]);
  t.match(done, { status: 'completed', result, failure: null, completedAt: now2, updatedAt: now2, nextPollAt: null, pollAttempts: 2, leaseUntil: null });
  t.same(
    deliveries(raw, video.id).map((row) => row.message_id),
    ['msg_A1', 'msg_A2'],
  );

  // Terminal states never change: a late answer is ignored and writes no event.
  t.equal(await store.applyTransition(video.id, T0 + 20_000, failed, null, [{ messageId: 'msg_A3', eventType: 'video.failed' }]), undefined);
  t.equal(await store.applyTransition(video.id, T0 + 20_000, processing, T0 + 30_000, []), undefined);
  t.same(await store.getVideo(video.id), done, 'the completed video is untouched');
  t.same(
    deliveries(raw, video.id).map((row) => row.message_id),
    ['msg_A1', 'msg_A2'],
    'no event for the ignored answers',
  );

  t.equal(await store.applyTransition('vid_missing', now2, failed, null, [{ messageId: 'msg_X', eventType: 'video.failed' }]), undefined);
  t.equal((raw.prepare("select count(*) as n from webhook_deliveries where message_id = 'msg_X'").get() as { n: number }).n, 0);

  const other = await store.insertVideo(newVideo());
  const lost = await store.applyTransition(other.id, now2, failed, null, []);
  t.match(lost, { status: 'failed', failure: failed.failure, result: null, completedAt: now2, nextPollAt: null });
  t.same(deliveries(raw, other.id), [], 'no events requested, none written');

  const running = await store.insertVideo(newVideo());
  await t.rejects(store.applyTransition(running.id, now2, processing, null, []), TypeError, 'a running video needs a next poll');
  t.same(await store.getVideo(running.id), running);
});

t.test('applyTransition is atomic with its outbox rows', async (t) => {
  const path = join(t.testdir(), 'gateway.db');
  const store = await openStore(t, path);
  const raw = inspect(t, path);
  const first = await store.insertVideo(newVideo());
  await store.applyTransition(first.id, T0 + 3_000, processing, T0 + 5_000, [{ messageId: 'msg_DUP', eventType: 'video.processing' }]);

  const second = await store.insertVideo(newVideo());
  await store.claimDueVideos(T0 + 2_000, 10, LEASE_MS);
  const before = await store.getVideo(second.id);
  await t.rejects(
    store.applyTransition(second.id, T0 + 4_000, completed(), null, [{ messageId: 'msg_DUP', eventType: 'video.completed' }]),
    /UNIQUE|PRIMARY/,
    'the outbox insert fails on a duplicate message id',
  );
  t.same(await store.getVideo(second.id), before, 'and the video update was rolled back');
  t.same(deliveries(raw, second.id), []);

  await t.rejects(
    store.applyTransition(second.id, T0 + 4_000, completed(), null, [
      { messageId: 'msg_B1', eventType: 'video.completed' },
      { messageId: 'msg_B1', eventType: 'video.completed' },
    ]),
    /UNIQUE|PRIMARY/,
  );
  t.same(await store.getVideo(second.id), before, 'a half-written outbox rolls back too');
  t.same(deliveries(raw, second.id), []);

  // The store is still usable after a rolled-back transaction.
  const ok = await store.applyTransition(second.id, T0 + 5_000, completed(), null, [{ messageId: 'msg_B2', eventType: 'video.completed' }]);
  t.equal(ok?.status, 'completed');
  t.same(
    deliveries(raw, second.id).map((row) => row.message_id),
    ['msg_B2'],
  );
});

t.test('insertVideo with an idempotency claim stores the video and completes its key in one transaction', async (t) => {
  const store = await openStore(t, join(t.testdir(), 'gateway.db'));
  const claimKey = async (key: string) => {
    const begun = await store.beginIdempotentRequest({ clientId: 'client_a', key, fingerprint: 'f', now: T0, expiresAt: T0 + 86_400_000, staleBefore: T0 - 60_000 });
    if (!begun.started) throw new Error('key not claimed');
    return begun.claim;
  };
  const keyState = async (key: string) => {
    const begun = await store.beginIdempotentRequest({ clientId: 'client_a', key, fingerprint: 'f', now: T0, expiresAt: T0 + 86_400_000, staleBefore: T0 - 60_000 });
    return begun.started ? 'free' : begun.existing;
  };
  const answer = (video: VideoRecord) => ({ status: 202, body: JSON.stringify({ id: video.id }), headers: { location: `/videos/${video.id}` } });

  const stored = await store.insertVideo(newVideo(), { claim: await claimKey('k1'), response: answer });
  t.same(await store.getVideo(stored.id), stored);
  t.match(await keyState('k1'), { state: 'completed', response: answer(stored) }, 'the key holds the answer built from the inserted record');

  const refused = newVideo();
  await t.rejects(
    store.insertVideo(refused, {
      claim: await claimKey('k2'),
      response: () => {
        throw new Error('dies before commit');
      },
    }),
    /dies before commit/,
  );
  t.equal(await store.getVideo(refused.id), undefined, 'no video without its completed key');
  t.match(await keyState('k2'), { state: 'in_progress' }, 'and the key is untouched');

  // A claim taken over meanwhile (judged orphaned) belongs to the newer request: the video is kept, the key is not touched.
  const lost = { ...(await claimKey('k3')), startedAt: T0 - 1 };
  const kept = await store.insertVideo(newVideo(), { claim: lost, response: answer });
  t.ok(await store.getVideo(kept.id));
  t.match(await keyState('k3'), { state: 'in_progress', response: null });
});

t.test('reschedulePoll', async (t) => {
  const store = await openStore(t, join(t.testdir(), 'gateway.db'));
  const video = await store.insertVideo(newVideo({ estimatedWaitSeconds: 40 }));
  await store.claimDueVideos(T0 + 2_000, 1, LEASE_MS);

  await store.reschedulePoll(video.id, T0 + 2_500, { nextPollAt: T0 + 5_000, pollAttempts: 1, notFoundSince: T0 + 2_500 });
  t.same(
    await store.getVideo(video.id),
    { ...video, nextPollAt: T0 + 5_000, pollAttempts: 1, notFoundSince: T0 + 2_500, leaseUntil: null },
    'lease released, schedule stored, nothing visible changed (updatedAt kept)',
  );

  await store.reschedulePoll(video.id, T0 + 6_000, { nextPollAt: T0 + 9_000, pollAttempts: 2, notFoundSince: null, estimatedWaitSeconds: 40, upstreamState: 'queued' });
  t.match(await store.getVideo(video.id), { updatedAt: T0, estimatedWaitSeconds: 40, upstreamState: 'queued', notFoundSince: null }, 'same estimate: updatedAt kept');

  await store.reschedulePoll(video.id, T0 + 10_000, { nextPollAt: T0 + 14_000, pollAttempts: 3, notFoundSince: null, estimatedWaitSeconds: 25 });
  t.match(await store.getVideo(video.id), { updatedAt: T0 + 10_000, estimatedWaitSeconds: 25, upstreamState: 'queued', pollAttempts: 3 }, 'new estimate: updatedAt moves');

  await store.reschedulePoll(video.id, T0 + 15_000, { nextPollAt: T0 + 20_000, pollAttempts: 4, notFoundSince: null, estimatedWaitSeconds: null });
  t.match(await store.getVideo(video.id), { updatedAt: T0 + 15_000, estimatedWaitSeconds: null }, 'estimate cleared: updatedAt moves');

  await store.reschedulePoll(video.id, T0 + 16_000, { nextPollAt: T0 + 21_000, pollAttempts: 5, notFoundSince: null, estimatedWaitSeconds: null });
  t.match(await store.getVideo(video.id), { updatedAt: T0 + 15_000, nextPollAt: T0 + 21_000 }, 'null to null is no change');

  const done = await store.applyTransition(video.id, T0 + 22_000, completed(), null, []);
  await store.reschedulePoll(video.id, T0 + 23_000, { nextPollAt: T0 + 30_000, pollAttempts: 9, notFoundSince: T0, estimatedWaitSeconds: 5 });
  t.same(await store.getVideo(video.id), done, 'a terminal video is never rescheduled');
});

t.test('refreshResult only touches completed videos', async (t) => {
  const store = await openStore(t, join(t.testdir(), 'gateway.db'));
  const running = await store.insertVideo(newVideo());
  const fresh = sampleResult('2026-01-01T02:00:00.000Z');
  t.equal(await store.refreshResult(running.id, T0 + 1_000, fresh), undefined);
  t.same(await store.getVideo(running.id), running);

  const failedVideo = await store.insertVideo(newVideo());
  const failedRecord = await store.applyTransition(failedVideo.id, T0 + 1_000, failed, null, []);
  t.equal(await store.refreshResult(failedVideo.id, T0 + 2_000, fresh), undefined);
  t.same(await store.getVideo(failedVideo.id), failedRecord);

  const video = await store.insertVideo(newVideo());
  const doneRecord = await store.applyTransition(video.id, T0 + 5_000, completed(), null, []);
  const refreshed = await store.refreshResult(video.id, T0 + 3_500_000, fresh);
  t.same(refreshed, { ...doneRecord, result: fresh, updatedAt: T0 + 3_500_000 });
  t.same(await store.getVideo(video.id), refreshed);
  t.equal(refreshed?.completedAt, T0 + 5_000, 'completedAt is kept');

  t.equal(await store.refreshResult('vid_missing', T0, fresh), undefined);
});

t.test('countRunning, getVideoUpstreamIdForClient, ping, close', async (t) => {
  const store = await openSqliteStore({ path: join(t.testdir(), 'gateway.db') });
  t.equal(await store.countRunning(), 0);
  const mine = await store.insertVideo(newVideo({ clientId: 'client_a' }));
  await store.insertVideo(newVideo({ clientId: 'client_b', status: 'processing' }));
  await store.insertVideo(newVideo({ status: 'completed', result: sampleResult() }));
  await store.insertVideo(newVideo({ status: 'failed' }));
  t.equal(await store.countRunning(), 2);

  t.equal(await store.getVideoUpstreamIdForClient('client_a', mine.id), mine.upstreamId);
  t.equal(await store.getVideoUpstreamIdForClient('client_b', mine.id), undefined, "another client's video is not found");
  t.equal(await store.getVideoUpstreamIdForClient('client_a', 'vid_missing'), undefined);

  await store.ping();
  await store.close();
  await store.close();
  t.pass('close is idempotent');
  await t.rejects(store.ping(), 'a closed store does not answer');
});

t.test('data survives close and reopen', async (t) => {
  const path = join(t.testdir(), 'gateway.db');
  const before = await openSqliteStore({ path });
  const video = await before.insertVideo(newVideo());
  const other = await before.insertVideo(newVideo());
  await before.applyTransition(other.id, T0 + 1_000, completed(), null, [{ messageId: 'msg_S1', eventType: 'video.completed' }]);
  const [claimed] = await before.claimDueVideos(T0 + 2_000, 10, LEASE_MS);
  await before.close();

  const after = await openStore(t, path);
  t.same(await after.getVideo(video.id), claimed, 'the in-flight video is still there, lease included');
  t.same(await after.claimDueVideos(T0 + 2_001, 10, LEASE_MS), [], 'its lease still holds after restart');
  const reclaimed = await after.claimDueVideos(T0 + 2_000 + LEASE_MS, 10, LEASE_MS);
  t.same(
    reclaimed.map((row) => row.id),
    [video.id],
    'once the lease expires it is due again',
  );
  t.same(
    deliveries(inspect(t, path), other.id).map((row) => row.message_id),
    ['msg_S1'],
    'the outbox survived',
  );
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
    await store.insertVideo({ ...base, id: 'vid_CRASH0000000000000000000001', upstreamId: 'up-crash-1' });
    await store.insertVideo({ ...base, id: 'vid_CRASH0000000000000000000002', upstreamId: 'up-crash-2' });
    await store.claimDueVideos(T0 + 1000, 10, 30000);
    await store.applyTransition('vid_CRASH0000000000000000000002', T0 + 2000,
      { status: 'processing', upstreamState: 'dreaming', estimatedWaitSeconds: null, result: null, failure: null }, T0 + 4000, []);
    process.kill(process.pid, 'SIGKILL');
  `;
  const result = await runNode(crasher, { DB_PATH: path, T0: String(T0) }).done;
  t.equal(result.signal, 'SIGKILL', `the process died without closing the store ${result.stderr}`);

  const store = await openStore(t, path);
  t.match(await store.getVideo('vid_CRASH0000000000000000000001'), { status: 'queued', leaseUntil: T0 + 31_000 });
  t.match(await store.getVideo('vid_CRASH0000000000000000000002'), { status: 'processing', leaseUntil: null, nextPollAt: T0 + 4_000 });
  t.same(
    (await store.claimDueVideos(T0 + 5_000, 10, LEASE_MS)).map((video) => video.id),
    ['vid_CRASH0000000000000000000002'],
    'the released video is due at once',
  );
  t.same(
    (await store.claimDueVideos(T0 + 31_000, 10, LEASE_MS)).map((video) => video.id),
    ['vid_CRASH0000000000000000000001'],
    'the one leased by the dead process is due when its lease expires',
  );
});
