import { join } from 'node:path';

import t from 'tap';

import type { VideoList } from '../schemas/list.js';
import { createClientRegistry } from '../src/auth/clients.js';
import { silentLogger } from '../src/lib/logger.js';
import type { IdempotencyRecord } from '../src/store/records.js';
import { openSqliteStore } from '../src/store/sqlite.js';
import { DEFAULT_MAX_CREATE_QUEUE_MS, DEFAULT_UPSTREAM_TIMEOUT_MS } from '../src/upstream/client.js';
import { UpstreamError } from '../src/upstream/types.js';
import {
  canonicalJson,
  decideForExistingKey,
  idempotencyInProgressTimeoutMs,
  idempotencyKeyFrom,
  isStoredOutcome,
  requestFingerprint,
} from '../src/videos/idempotency.js';
import { createIdempotencyKeyPruner } from '../src/videos/idempotency-pruner.js';
import { auth, startTestGateway, testClientsFile, type TestGateway } from './helpers/gateway.js';
import { ManualClock, ManualTimers } from './helpers/manual-time.js';

const DAY_MS = 24 * 60 * 60_000;

const post = (gw: TestGateway, body: Record<string, unknown>, key: string | undefined, who: 'alice' | 'bob' = 'alice') =>
  gw.app.inject({
    method: 'POST',
    url: '/videos',
    headers: { ...auth(who), ...(key === undefined ? {} : { 'idempotency-key': key }) },
    payload: body,
  });

const listIds = async (gw: TestGateway, who: 'alice' | 'bob' = 'alice'): Promise<string[]> =>
  (await gw.app.inject({ method: 'GET', url: '/videos?limit=100', headers: auth(who) })).json<VideoList>().data.map((video) => video.id);

t.test('pure rules', async (t) => {
  t.test('canonical JSON ignores key order at every level, keeps array order', async (t) => {
    t.equal(canonicalJson({ b: 1, a: { d: [2, 1], c: 'x' } }), canonicalJson({ a: { c: 'x', d: [2, 1] }, b: 1 }));
    t.not(canonicalJson({ a: [1, 2] }), canonicalJson({ a: [2, 1] }));
    t.equal(canonicalJson({ a: undefined, b: null }), '{"b":null}');
  });

  t.test('the fingerprint covers method, path and body', async (t) => {
    const body = { prompt: 'A tiger walking in snow', metadata: { a: '1', b: '2' } };
    t.match(requestFingerprint('POST', '/videos', body), /^[0-9a-f]{64}$/);
    t.equal(
      requestFingerprint('POST', '/videos', body),
      requestFingerprint('post', '/videos', { metadata: { b: '2', a: '1' }, prompt: body.prompt }),
    );
    t.not(requestFingerprint('POST', '/videos', body), requestFingerprint('POST', '/videos', { ...body, loop: true }));
    t.not(requestFingerprint('POST', '/videos', body), requestFingerprint('POST', '/other', body));
  });

  t.test('a quoted (Structured Field) key names the same key as a bare one', async (t) => {
    t.equal(idempotencyKeyFrom('"8e03978e-40d5"'), '8e03978e-40d5');
    t.equal(idempotencyKeyFrom('8e03978e-40d5'), '8e03978e-40d5');
    t.equal(idempotencyKeyFrom('"'), '"');
  });

  t.test('an existing key: other body → reused; same body → replay once completed, in_progress before', async (t) => {
    const record: IdempotencyRecord = {
      clientId: 'alice',
      key: 'k',
      fingerprint: 'f1',
      state: 'in_progress',
      response: null,
      createdAt: 0,
      expiresAt: DAY_MS,
      erasedAt: null,
      videoId: null,
    };
    t.same(decideForExistingKey(record, 'f2'), { kind: 'reused' });
    t.same(decideForExistingKey(record, 'f1'), { kind: 'in_progress' });
    const response = { status: 202, body: '{}', headers: {} };
    t.same(decideForExistingKey({ ...record, state: 'completed', response }, 'f1'), { kind: 'replay', response });
    t.same(decideForExistingKey({ ...record, state: 'completed', response }, 'f2'), { kind: 'reused' });
    const erased = { ...record, state: 'completed' as const, fingerprint: '', erasedAt: DAY_MS / 2 };
    t.same(decideForExistingKey(erased, 'f1'), { kind: 'erased' }, 'the key of an erased video, same body: erased');
    t.same(decideForExistingKey(erased, 'f2'), { kind: 'erased' }, 'any body: its fingerprint is gone with the content');
  });

  t.test('only the upstream’s own refusal is a stored outcome', async (t) => {
    t.ok(isStoredOutcome(new UpstreamError('rejected', 'moderated', 400)));
    for (const kind of ['timeout', 'unavailable', 'rate_limited', 'circuit_open', 'auth', 'not_found'] as const) {
      t.notOk(isStoredOutcome(new UpstreamError(kind, 'x')), kind);
    }
  });

  t.test('an in-progress key outlives the longest create (rate budget wait + upstream timeout) with room to spare', async (t) => {
    t.ok(idempotencyInProgressTimeoutMs >= 2 * (DEFAULT_MAX_CREATE_QUEUE_MS + DEFAULT_UPSTREAM_TIMEOUT_MS));
  });
});

t.test('50 concurrent identical POSTs with one key start exactly one generation and store one video', async (t) => {
  // Above the default 30 creates a minute, so every one of the 50 reaches the idempotency check.
  const clients = createClientRegistry({ clients: testClientsFile.clients.map((client) => ({ ...client, createLimitPerMinute: 100 })) });
  const gw = await startTestGateway(t, { gateway: { clients } });
  const body = { prompt: 'A paid generation, retried by a flaky phone' };
  const responses = await Promise.all(Array.from({ length: 50 }, () => post(gw, body, 'retry-me-0001')));

  t.equal(gw.sandbox.stats.creates, 1, 'one upstream create');
  t.equal((await listIds(gw)).length, 1, 'one video');
  const fresh = responses.filter((response) => response.statusCode === 202 && response.headers['idempotent-replayed'] === undefined);
  t.equal(fresh.length, 1, 'exactly one request ran the create');
  const first = fresh[0];
  for (const response of responses) {
    if (response === first) continue;
    if (response.statusCode === 409) {
      t.equal(response.json().code, 'idempotency_key_in_use');
      t.equal(response.headers['retry-after'], '1');
    } else {
      t.equal(response.statusCode, 202);
      t.equal(response.headers['idempotent-replayed'], 'true');
      t.equal(response.body, first?.body);
    }
  }

  const retry = await post(gw, body, 'retry-me-0001');
  t.equal(retry.statusCode, 202);
  t.equal(retry.headers['idempotent-replayed'], 'true');
  t.equal(retry.body, first?.body, 'same body');
  t.equal(retry.headers.location, first?.headers.location, 'same Location');
  t.equal(retry.headers['content-type'], 'application/json; charset=utf-8');
  t.equal(gw.sandbox.stats.creates, 1, 'still one upstream create');
});

t.test('same key, different body → 422 idempotency_key_reused; key order alone is not a different body', async (t) => {
  const gw = await startTestGateway(t);
  const created = await post(gw, { prompt: 'A fox in the forest', metadata: { a: '1', b: '2' } }, 'key-1');
  t.equal(created.statusCode, 202);

  const reordered = await post(gw, { metadata: { b: '2', a: '1' }, prompt: 'A fox in the forest' }, 'key-1');
  t.equal(reordered.statusCode, 202);
  t.equal(reordered.headers['idempotent-replayed'], 'true');

  const different = await post(gw, { prompt: 'A fox in the desert' }, 'key-1');
  t.equal(different.statusCode, 422);
  t.equal(different.headers['content-type'], 'application/problem+json; charset=utf-8');
  t.equal(different.json().code, 'idempotency_key_reused');
  t.equal(different.json().errors[0].path, '/headers/idempotency-key');
  t.equal(gw.sandbox.stats.creates, 1);

  const quoted = await post(gw, { prompt: 'A fox in the forest', metadata: { a: '1', b: '2' } }, '"key-1"');
  t.equal(quoted.headers['idempotent-replayed'], 'true', 'the draft’s quoted form names the same key');
});

t.test('keys are scoped per client', async (t) => {
  const gw = await startTestGateway(t);
  const body = { prompt: 'Same key, two apps' };
  const alice = await post(gw, body, 'shared-key', 'alice');
  const bob = await post(gw, body, 'shared-key', 'bob');
  t.equal(alice.statusCode, 202);
  t.equal(bob.statusCode, 202);
  t.equal(bob.headers['idempotent-replayed'], undefined, 'bob’s request is his own');
  t.not(bob.json().id, alice.json().id);
  t.equal(gw.sandbox.stats.creates, 2);
  t.same(await listIds(gw, 'bob'), [bob.json().id]);
});

t.test('while the first request runs → 409; an orphaned in-progress key is taken over after a minute', async (t) => {
  const gw = await startTestGateway(t);
  const body = { prompt: 'A lighthouse in a storm' };
  // A request that began and never finished (its process died mid-create).
  const begun = await gw.store.idempotencyKeys.begin({
    clientId: 'alice',
    key: 'orphan',
    fingerprint: requestFingerprint('POST', '/videos', body),
    now: gw.clock.now(),
    expiresAt: gw.clock.now() + DAY_MS,
    staleBefore: gw.clock.now() - 60_000,
  });
  t.ok(begun.started);

  const busy = await post(gw, body, 'orphan');
  t.equal(busy.statusCode, 409);
  t.equal(busy.json().code, 'idempotency_key_in_use');
  t.equal(gw.sandbox.stats.creates, 0);

  gw.clock.advance(60_000);
  const takenOver = await post(gw, body, 'orphan');
  t.equal(takenOver.statusCode, 202);
  t.equal(takenOver.headers['idempotent-replayed'], undefined);
  t.equal(gw.sandbox.stats.creates, 1);

  // The orphan's late completion must not overwrite the new owner's answer.
  if (begun.started) await gw.store.idempotencyKeys.complete(begun.claim, { status: 500, body: 'stale', headers: {} });
  const replay = await post(gw, body, 'orphan');
  t.equal(replay.statusCode, 202);
  t.equal(replay.body, takenOver.body);
});

t.test('a crash right after the video is stored cannot leave its key open: the retry replays it, no second generation', async (t) => {
  const sqlitePath = join(t.testdir(), 'crash.db');
  const clock = new ManualClock(Date.parse('2026-11-29T12:00:00.000Z'));
  // The process dies the moment the upstream's acceptance is written: no later write of this request reaches the store.
  const store = await openSqliteStore({ path: sqlitePath });
  const acceptSubmission = store.videos.acceptSubmission.bind(store);
  const completeIdempotentRequest = store.idempotencyKeys.complete.bind(store);
  const abandonIdempotentRequest = store.idempotencyKeys.abandon.bind(store);
  let dead = false;
  const crashed = (): Promise<never> => Promise.reject(new Error('simulated crash: the process is gone'));
  store.videos.acceptSubmission = async (...args: Parameters<typeof acceptSubmission>) => {
    const record = await acceptSubmission(...args);
    dead = true;
    return record;
  };
  store.idempotencyKeys.complete = (...args: Parameters<typeof completeIdempotentRequest>) =>
    dead ? crashed() : completeIdempotentRequest(...args);
  store.idempotencyKeys.abandon = (...args: Parameters<typeof abandonIdempotentRequest>) =>
    dead ? crashed() : abandonIdempotentRequest(...args);

  const first = await startTestGateway(t, { sqlitePath, clock, gateway: { store } });
  const body = { prompt: 'A paid generation, interrupted by a crash' };
  await post(first, body, 'crash-key'); // whatever it answered, the phone never got it
  t.ok(dead, 'the crash point was reached');
  await first.close();

  const second = await startTestGateway(t, { sqlitePath, clock, sandboxInstance: first.sandbox });
  clock.advance(idempotencyInProgressTimeoutMs);
  const retry = await post(second, body, 'crash-key');
  t.equal(retry.statusCode, 202);
  t.equal(retry.headers['idempotent-replayed'], 'true', 'the stored answer of the first create');
  t.equal(first.sandbox.stats.creates, 1, 'one paid generation');
  t.same(await listIds(second), [retry.json().id], 'one video: the one stored before the crash');
  t.equal(retry.headers.location, `/videos/${String(retry.json().id)}`);
});

t.test('a retryable failure releases the key: the retry runs the create again', async (t) => {
  const gw = await startTestGateway(t);
  const body = { prompt: 'A city at night' };
  gw.sandbox.injectFault({ op: 'create', status: 500 });
  const failed = await post(gw, body, 'retry-after-5xx');
  t.equal(failed.statusCode, 502);
  t.equal(failed.json().code, 'upstream_unavailable');

  const retried = await post(gw, body, 'retry-after-5xx');
  t.equal(retried.statusCode, 202);
  t.equal(retried.headers['idempotent-replayed'], undefined, 'a real second attempt');
  t.equal((await listIds(gw)).length, 1, 'one video: the failed attempt stored none');
  const replay = await post(gw, body, 'retry-after-5xx');
  t.equal(replay.headers['idempotent-replayed'], 'true');
});

t.test('an upstream refusal is final: it is stored and replayed without another upstream call', async (t) => {
  const gw = await startTestGateway(t);
  const body = { prompt: 'Something the moderation refuses [moderate]' };
  const refused = await post(gw, body, 'moderated');
  t.equal(refused.statusCode, 422);
  t.equal(refused.json().code, 'upstream_rejected');
  const createsAfterFirst = gw.sandbox.stats.creates;

  const replay = await post(gw, body, 'moderated');
  t.equal(replay.statusCode, 422);
  t.equal(replay.headers['idempotent-replayed'], 'true');
  t.equal(replay.headers['content-type'], 'application/problem+json; charset=utf-8');
  t.same(replay.json(), refused.json(), 'same problem body (with the first request’s requestId)');
  t.equal(gw.sandbox.stats.creates, createsAfterFirst, 'no second upstream call');
  t.same(await listIds(gw), []);
});

t.test('a gateway-side 400 (unusable keyframe video) is not stored: the key stays free', async (t) => {
  const gw = await startTestGateway(t);
  const bad = await post(gw, { prompt: 'Continue', keyframes: { start: { videoId: 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC' } } }, 'k-400');
  t.equal(bad.statusCode, 400);
  const other = await post(gw, { prompt: 'Something else entirely' }, 'k-400');
  t.equal(other.statusCode, 202, 'the key was never bound to the refused body');
});

t.test('stored responses survive a restart', async (t) => {
  const sqlitePath = join(t.testdir(), 'restart.db');
  const clock = new ManualClock(Date.parse('2026-11-29T12:00:00.000Z'));
  const first = await startTestGateway(t, { sqlitePath, clock });
  const body = { prompt: 'A calm sea at dawn' };
  const original = await post(first, body, 'survives');
  t.equal(original.statusCode, 202);
  await first.close();

  const second = await startTestGateway(t, { sqlitePath, clock, sandboxInstance: first.sandbox });
  const replay = await post(second, body, 'survives');
  t.equal(replay.statusCode, 202);
  t.equal(replay.headers['idempotent-replayed'], 'true');
  t.equal(replay.body, original.body);
  t.equal(replay.headers.location, original.headers.location);
  t.equal(first.sandbox.stats.creates, 1);
});

t.test('keys are kept 24 h: then the key is free again and pruned', async (t) => {
  const gw = await startTestGateway(t);
  t.equal((await post(gw, { prompt: 'Day one' }, 'daily')).statusCode, 202);
  gw.clock.advance(DAY_MS - 1);
  t.equal((await post(gw, { prompt: 'Day two' }, 'daily')).statusCode, 422, 'still bound just before 24 h');
  gw.clock.advance(1);
  const reused = await post(gw, { prompt: 'Day two' }, 'daily');
  t.equal(reused.statusCode, 202, 'a new request after 24 h');
  t.equal(reused.headers['idempotent-replayed'], undefined);

  t.equal((await post(gw, { prompt: 'Another' }, 'other')).statusCode, 202);
  gw.clock.advance(DAY_MS);
  t.equal(await gw.store.idempotencyKeys.prune(gw.clock.now()), 2, 'both expired keys deleted');
  t.equal(await gw.store.idempotencyKeys.prune(gw.clock.now()), 0);
});

t.test('expired keys are pruned on a timer while workers run', async (t) => {
  const clock = new ManualClock(Date.parse('2026-11-29T12:00:00.000Z'));
  const timers = new ManualTimers(clock);
  const store = await openSqliteStore({ path: join(t.testdir(), 'prune.db') });
  t.teardown(() => store.close());
  const pruner = createIdempotencyKeyPruner({ keys: store.idempotencyKeys, clock, timers, logger: silentLogger, everyMs: 10 * 60_000 });
  await store.idempotencyKeys.begin({
    clientId: 'alice',
    key: 'old',
    fingerprint: 'f',
    now: clock.now(),
    expiresAt: clock.now() + DAY_MS,
    staleBefore: 0,
  });
  pruner.start();
  pruner.start();
  t.equal(timers.pending(), 1, 'one pruning timer');
  timers.advance(DAY_MS + 10 * 60_000);
  await new Promise((resolve) => setImmediate(resolve));
  const again = await store.idempotencyKeys.begin({
    clientId: 'alice',
    key: 'old',
    fingerprint: 'g',
    now: clock.now(),
    expiresAt: clock.now() + DAY_MS,
    staleBefore: 0,
  });
  t.ok(again.started, 'the expired row is gone');
  t.equal(await store.idempotencyKeys.prune(clock.now()), 0);
  pruner.stop();
  t.equal(timers.pending(), 0, 'stopping leaves no timer');
});

t.test('Idempotency-Key must be 1..255 printable ASCII characters', async (t) => {
  const gw = await startTestGateway(t);
  for (const key of ['', 'k'.repeat(256), 'clé']) {
    const response = await post(gw, { prompt: 'A tiger walking in snow' }, key);
    t.equal(response.statusCode, 400, JSON.stringify(key.slice(0, 10)));
    t.equal(response.json().code, 'validation_failed');
    t.equal(response.json().errors[0].path, '/headers/idempotency-key');
  }
  t.equal(gw.sandbox.stats.creates, 0);
  t.equal((await post(gw, { prompt: 'A tiger walking in snow' }, 'k'.repeat(255))).statusCode, 202);
});
