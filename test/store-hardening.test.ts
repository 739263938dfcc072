/**
 * The store under trouble (issue 13 items 2, 4, 5), with a real SQLite file: a database another process holds locked,
 * a file deleted or replaced under a running gateway. What a client sees: 503 `store_unavailable` and nothing bought
 * upstream, an honest `/readyz`, and a `/healthz` that answers while the store waits.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import BetterSqlite3 from 'better-sqlite3';
import t, { type Test } from 'tap';

import { openSqliteStore } from '../src/store/sqlite.js';
import { auth, startTestGateway } from './helpers/gateway.js';
import { until } from './helpers/until.js';

const prompt = { prompt: 'A tiger walking in snow' };

/** Another connection (as another process would) holding SQLite's write lock until `release`. */
function holdWriteLock(t: Test, path: string): { release: () => void } {
  const other = new BetterSqlite3(path);
  other.exec('BEGIN IMMEDIATE');
  let held = true;
  const release = (): void => {
    if (!held) return;
    held = false;
    other.exec('ROLLBACK');
    other.close();
  };
  t.teardown(release);
  return { release };
}

t.test('a store that cannot take the intent: 503 store_unavailable and no upstream create', async (t) => {
  const sqlitePath = join(t.testdir(), 'gateway.db');
  const gateway = await startTestGateway(t, { sqlitePath, env: { STORE_LOCK_WAIT_MS: '200ms' } });
  const lock = holdWriteLock(t, sqlitePath);

  const withKey = await gateway.app.inject({
    method: 'POST',
    url: '/videos',
    headers: { ...auth(), 'idempotency-key': 'k-locked' },
    payload: prompt,
  });
  t.equal(withKey.statusCode, 503, withKey.body);
  t.equal(withKey.json<{ code: string }>().code, 'store_unavailable');
  t.ok(withKey.headers['retry-after'], 'with a retry-after');
  t.notMatch(withKey.body, /SQLITE|locked|busy/i, 'no driver text in the problem');
  const withoutKey = await gateway.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: prompt });
  t.equal(withoutKey.statusCode, 503, withoutKey.body);
  t.equal(gateway.sandbox.stats.creates, 0, 'the upstream was never asked: nothing paid for, nothing untracked');

  lock.release();
  const retried = await gateway.app.inject({
    method: 'POST',
    url: '/videos',
    headers: { ...auth(), 'idempotency-key': 'k-locked' },
    payload: prompt,
  });
  t.equal(retried.statusCode, 202, 'the same key works once the store is back: nothing was half-written');
  t.equal(gateway.sandbox.stats.creates, 1);
});

/** A real second process holding SQLite's write lock (`BEGIN IMMEDIATE`) until told to let go. */
async function lockingProcess(t: Test, path: string): Promise<{ release: () => Promise<void> }> {
  const script = `
    import Database from 'better-sqlite3';
    const db = new Database(process.argv[1]);
    db.exec('BEGIN IMMEDIATE');
    process.stdout.write('locked\\n');
    process.stdin.once('data', () => { db.exec('ROLLBACK'); db.close(); process.stdout.write('released\\n'); process.exit(0); });
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, path], { stdio: ['pipe', 'pipe', 'inherit'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = once(child, 'exit');
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  await until(() => output.includes('locked'), 'the other process holds the write lock');
  return {
    async release() {
      child.stdin.write('go\n');
      await exited;
    },
  };
}

t.test('another process holding the write lock: /healthz answers while a create waits, which then succeeds', async (t) => {
  const sqlitePath = join(t.testdir(), 'gateway.db');
  let lockWaits = 0;
  const store = await openSqliteStore({ path: sqlitePath, lockWaitMs: 60_000, onLockWait: () => (lockWaits += 1) });
  const gateway = await startTestGateway(t, { sqlitePath, gateway: { store } });
  const lock = await lockingProcess(t, sqlitePath);

  let createAnswered = false;
  const create = gateway.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: prompt }).then((response) => {
    createAnswered = true;
    return response;
  });
  await until(() => lockWaits > 0, 'the create waits for the lock');
  const health = await gateway.app.inject({ method: 'GET', url: '/healthz' });
  t.equal(health.statusCode, 200, '/healthz answered while the other process still holds the lock');
  t.notOk(createAnswered, 'the create is still waiting: the lock really was held');

  await lock.release();
  const created = await create;
  t.equal(created.statusCode, 202, 'once the lock is free the create goes through');
  t.equal(gateway.sandbox.stats.creates, 1);
});

/** Log lines a gateway writes, parsed. */
function logCapture(): { entries: Array<{ level: number; msg: string }>; stream: Writable } {
  const entries: Array<{ level: number; msg: string }> = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) entries.push(JSON.parse(line) as { level: number; msg: string });
      done();
    },
  });
  return { entries, stream };
}

const readyz = async (gateway: Awaited<ReturnType<typeof startTestGateway>>) => {
  const response = await gateway.app.inject({ method: 'GET', url: '/readyz' });
  return { status: response.statusCode, store: response.json<{ checks: { store: string } }>().checks.store };
};

t.test('readiness proves the store takes writes: a write-locked store is not ready', async (t) => {
  const sqlitePath = join(t.testdir(), 'gateway.db');
  const gateway = await startTestGateway(t, { sqlitePath, env: { STORE_LOCK_WAIT_MS: '100ms' } });
  t.same(await readyz(gateway), { status: 200, store: 'ok' });
  const lock = holdWriteLock(t, sqlitePath);
  gateway.clock.advance(60_000); // past the heartbeat's throttle
  t.same(await readyz(gateway), { status: 503, store: 'failing' }, 'reads still work, writes do not: not ready');
  lock.release();
  t.same(await readyz(gateway), { status: 200, store: 'ok' }, 'ready again once a write goes through');
});

for (const [what, pull] of [
  ['deleted', (path: string) => rmSync(path)],
  ['replaced', (path: string) => (renameSync(path, `${path}.moved`), writeFileSync(path, ''))],
] as const) {
  t.test(`a database file ${what} under the running gateway: not ready, loudly, and no create is acknowledged`, async (t) => {
    const sqlitePath = join(t.testdir(), 'gateway.db');
    const logs = logCapture();
    const gateway = await startTestGateway(t, { sqlitePath, gateway: { logger: { level: 'info', stream: logs.stream } } });
    t.same(await readyz(gateway), { status: 200, store: 'ok' });

    pull(sqlitePath);
    t.same(await readyz(gateway), { status: 503, store: 'failing' });
    t.ok(
      logs.entries.some((entry) => entry.level >= 50 && /database file/.test(entry.msg)),
      'an error-level log line says the database file is gone',
    );
    const create = await gateway.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: prompt });
    t.equal(create.statusCode, 503, 'a create is refused rather than acknowledged into a file nobody will read again');
    t.equal(create.json<{ code: string }>().code, 'store_unavailable');
    t.equal(gateway.sandbox.stats.creates, 0, 'and nothing was bought upstream');
  });
}

t.test('a keyless create cut off mid-submit ends submit_interrupted past the deadline, with its failed webhook', async (t) => {
  const gateway = await startTestGateway(t);
  const request = {
    prompt: 'A tiger walking in snow',
    aspectRatio: '16:9' as const,
    loop: false,
    model: null,
    resolution: null,
    duration: null,
    keyframes: null,
    callbackUrl: 'https://example.com/hooks',
    webhookEvents: ['video.completed' as const, 'video.failed' as const],
    metadata: null,
  };
  // What a process killed after recording the intent leaves behind.
  await gateway.store.videos.recordSubmission({
    id: 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC',
    clientId: 'alice',
    request,
    createdAt: gateway.clock.now(),
  });
  const read = () => gateway.app.inject({ method: 'GET', url: '/videos/vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC', headers: auth() });
  t.equal((await read()).json<{ status: string }>().status, 'queued', 'while it may still be submitting it reads as queued');

  t.equal(await gateway.creator.recoverInterrupted(), 0, 'not before the create deadline');
  gateway.clock.advance(60_000);
  t.equal(await gateway.creator.recoverInterrupted(), 1);
  const video = (await read()).json<{ status: string; failure: { code: string } | null; webhook: { status: string } | null }>();
  t.equal(video.status, 'failed');
  t.equal(video.failure?.code, 'submit_interrupted');
  t.equal(video.webhook?.status, 'pending', 'the video.failed event is in the outbox');
  t.equal(await gateway.creator.recoverInterrupted(), 0, 'ended once');
  t.equal(gateway.sandbox.stats.creates, 0);
});
