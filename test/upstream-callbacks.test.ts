import { randomBytes } from 'node:crypto';

import Database from 'better-sqlite3';
import t, { type Test } from 'tap';

import { createSecretScrubber } from '../src/lib/secrets.js';
import { callbackUrl, createCallbackTokens } from '../src/tracking/callback-token.js';
import { callbackPollAt, callbackSafetyNetSchedule, nextPollDelay } from '../src/tracking/schedule.js';
import { callbackFlow } from './helpers/callback-flow.js';
import { auth, createVideo, readVideo, startTestGateway, type TestGateway, upstreamIdOf } from './helpers/gateway.js';
import { parsePrometheus, sampleValue } from './helpers/prometheus.js';
import { sendText, startScriptedServer } from './helpers/scripted-server.js';
import { until } from './helpers/until.js';

const secret = Buffer.from('0123456789abcdef0123456789abcdef-test-secret', 'utf8');
const videoId = 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC';

// ---- pure parts ----

t.test('callback tokens name the video without revealing it, and only under the same secret', async (t) => {
  const tokens = createCallbackTokens(secret);
  const token = tokens.issue(videoId);
  t.match(token, /^[A-Za-z0-9_-]+$/, 'URL-safe');
  t.equal(tokens.issue(videoId), token, 'deterministic: the same URL on every replica');
  t.equal(tokens.verify(token), videoId);
  t.notMatch(token, /vid_|01JDXYZ/, 'the id is not readable in the token');
  t.notMatch(Buffer.from(token, 'base64url').toString('latin1'), 'vid_', 'nor in its bytes');
  t.not(tokens.issue('vid_01JDXYZ8M6X1ZP3V9R4QK7T2HD'), token, 'another video, another token');
  t.equal(createCallbackTokens(Buffer.from('another-secret-0123456789abcdefghijkl')).verify(token), undefined, 'another secret');

  const raw = Buffer.from(token, 'base64url');
  for (let index = 0; index < raw.length; index += 1) {
    const tampered = Buffer.from(raw);
    tampered[index] = (tampered[index] ?? 0) ^ 0x01;
    if (tokens.verify(tampered.toString('base64url')) !== undefined) t.fail(`a flipped bit at byte ${index} still verified`);
  }
  for (const bad of ['', 'x', 'not a token!', `${token}=`, `${token}A`, token.slice(1), 'A'.repeat(300), '../../etc/passwd']) {
    t.equal(tokens.verify(bad), undefined, `refused: ${JSON.stringify(bad.slice(0, 20))}`);
  }
  t.equal(callbackUrl('https://gw.example/base/', token), `https://gw.example/base/upstream/callbacks/${token}`);
});

t.test('with callbacks on, polls are a safety net: first at ~min, then every max-with-callbacks', async (t) => {
  const base = { minMs: 2_000, maxMs: 15_000 };
  const schedule = callbackSafetyNetSchedule(base, 60_000);
  const noJitter = () => 0.5;
  t.equal(nextPollDelay(0, null, schedule, noJitter), 2_000, 'first poll confirms the task exists');
  t.equal(nextPollDelay(1, null, schedule, noJitter), 60_000);
  t.equal(nextPollDelay(7, null, schedule, noJitter), 60_000, 'never longer');
  t.equal(nextPollDelay(0, 600, schedule, noJitter), 60_000, 'an estimate is capped at the max too');
  t.equal(nextPollDelay(1, null, base, noJitter), 3_000, 'without callbacks: the ×1.5 schedule');
  t.equal(callbackSafetyNetSchedule(base, 1_000).maxMs, 2_000, 'never below the minimum');
  const jittered = nextPollDelay(1, null, schedule, () => 0);
  t.ok(jittered >= 54_000 && jittered <= 60_000, 'jitter still applies');
});

t.test('callback polls: at most one per 2 s window, deferred rather than dropped', async (t) => {
  t.equal(callbackPollAt(undefined, 10_000), 10_000, 'first callback: now');
  t.equal(callbackPollAt(10_000, 10_500), 12_000, 'inside the window: at its end');
  t.equal(callbackPollAt(12_000, 10_600), null, 'a later poll is already set');
  t.equal(callbackPollAt(10_000, 12_000), 12_000, 'window over: now');
  t.equal(callbackPollAt(10_000, 10_000), 12_000, 'same instant: the poll may have run already, so defer');
});

t.test('callback tokens are scrubbed from log lines', async (t) => {
  const token = createCallbackTokens(secret).issue(videoId);
  const line = JSON.stringify({ msg: 'incoming request', req: { url: `/upstream/callbacks/${token}` } });
  const scrubbed = createSecretScrubber().scrub(line);
  t.notMatch(scrubbed, token);
  t.match(scrubbed, '/upstream/callbacks/[redacted]');
});

// ---- through the gateway ----

const gatewaySecret = randomBytes(32);
const base = 'https://gw.example.com/hooks';

async function callbackGateway(t: Test, env: Record<string, string> = {}): Promise<TestGateway> {
  return startTestGateway(t, {
    env: { UPSTREAM_CALLBACK_BASE_URL: base, ...env },
    gateway: { gatewaySecret },
  });
}

/** Commits other connections made to the database file: PRAGMA data_version moves on each one. */
function storeWrites(t: Test, gw: TestGateway): () => number {
  const path = gw.config.sqlitePath;
  if (path === null) throw new Error('these tests run on a SQLite file');
  const db = new Database(path, { readonly: true });
  t.teardown(() => db.close());
  const version = (): number => Number(db.pragma('data_version', { simple: true }));
  const start = version();
  return () => version() - start;
}

const tokenOf = async (gw: TestGateway, id: string): Promise<string> => {
  const url = gw.sandbox.tasks.get(await upstreamIdOf(gw, id))?.request.callback_url ?? '';
  return url.slice(`${base}/upstream/callbacks/`.length);
};

const postCallback = (gw: TestGateway, token: string, payload: unknown = { state: 'dreaming' }, headers: Record<string, string> = {}) =>
  gw.app.inject({ method: 'POST', url: `/upstream/callbacks/${token}`, payload: payload as string, headers });

t.test('each create passes callback_url = <base>/upstream/callbacks/<token>, naming neither id', async (t) => {
  const gw = await callbackGateway(t);
  const video = await createVideo(gw);
  const upstreamId = await upstreamIdOf(gw, video.id);
  const url = gw.sandbox.tasks.get(upstreamId)?.request.callback_url ?? '';
  t.match(url, new RegExp(`^${base}/upstream/callbacks/[A-Za-z0-9_-]{40,}$`));
  t.notMatch(url, video.id);
  t.notMatch(url, upstreamId);
  t.equal(createCallbackTokens(gatewaySecret).verify(await tokenOf(gw, video.id)), video.id);
  t.notMatch(JSON.stringify(await readVideo(gw, video.id)), '/upstream/callbacks', 'never shown to the client');

  const plain = await startTestGateway(t);
  const other = await createVideo(plain);
  t.equal(plain.sandbox.tasks.get(await upstreamIdOf(plain, other.id))?.request.callback_url, null, 'off without a base URL');
  t.equal((await postCallback(plain, 'x'.repeat(60))).statusCode, 404, 'and the route does not exist');
});

t.test('a valid callback answers 204, needs no key, and makes the video due now', async (t) => {
  const gw = await callbackGateway(t);
  const video = await createVideo(gw);
  gw.clock.advance(2_000);
  await gw.poller.tick(); // first poll: still queued upstream
  gw.clock.advance(1_000);
  const before = await gw.store.videos.get(video.id);
  t.ok((before?.nextPollAt ?? 0) > gw.clock.now() + 50_000, 'next safety-net poll about a minute away');
  const queries = gw.sandbox.stats.queries;

  const response = await postCallback(gw, await tokenOf(gw, video.id));
  t.equal(response.statusCode, 204);
  t.equal(response.body, '');
  t.equal(gw.sandbox.stats.queries, queries, 'the route itself never calls the upstream');
  t.equal((await gw.store.videos.get(video.id))?.nextPollAt, gw.clock.now(), 'due now');
  t.equal(await gw.poller.tick(), 1, 'polled at once');
  t.equal(gw.sandbox.stats.queries, queries + 1);
  t.equal((await readVideo(gw, video.id)).status, 'processing');

  const samples = parsePrometheus(await gw.metrics.render());
  t.equal(sampleValue(samples, 'gateway_upstream_callbacks_total', { result: 'valid' }), 1);
  t.equal(sampleValue(samples, 'gateway_upstream_callback_polls_total'), 1);
});

t.test('a callback during a poll in flight: the video is polled again once that poll ends', async (t) => {
  const gw = await callbackGateway(t);
  const video = await createVideo(gw);
  const upstreamId = await upstreamIdOf(gw, video.id);
  gw.clock.advance(2_000);
  gw.sandbox.injectFault({ op: 'query', delayMs: 300 }); // a slow answer, then a normal one
  const polling = gw.poller.tick();
  await until(() => gw.sandbox.stats.queries === 1, 'the poll to reach the upstream');
  t.equal((await postCallback(gw, await tokenOf(gw, video.id))).statusCode, 204, 'while the poll waits for its answer');
  await polling;
  t.equal((await gw.store.videos.get(video.id))?.nextPollAt, gw.clock.now(), 'due again at once, not a minute later');
  t.equal(await gw.poller.tick(), 1);
  t.equal(gw.sandbox.stats.queriesById.get(upstreamId), 2);
});

t.test('1,000 invalid-token callbacks: 404 not_found, 0 upstream calls, 0 store writes', async (t) => {
  const gw = await callbackGateway(t);
  const video = await createVideo(gw);
  const token = await tokenOf(gw, video.id);
  const writes = storeWrites(t, gw);
  const requests = gw.sandbox.stats.requests;
  const forged = createCallbackTokens(randomBytes(32)).issue(video.id);
  const statuses = new Map<number, number>();
  for (let index = 0; index < 1_000; index += 1) {
    const variant = index % 4;
    const bad =
      variant === 0
        ? forged
        : variant === 1
          ? `${token.slice(0, -2)}${token.endsWith('AA') ? 'BB' : 'AA'}`
          : variant === 2
            ? randomBytes(48).toString('base64url')
            : `${video.id}`;
    const response = await postCallback(gw, bad);
    statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1);
    if (index === 0) {
      t.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8');
      t.match(response.json(), { status: 404, code: 'not_found' });
      t.notMatch(response.body, video.id);
    }
  }
  t.same([...statuses], [[404, 1_000]]);
  t.equal(gw.sandbox.stats.requests, requests, 'no upstream call');
  t.equal(writes(), 0, 'no store write');
  const samples = parsePrometheus(await gw.metrics.render());
  t.equal(sampleValue(samples, 'gateway_upstream_callbacks_total', { result: 'invalid' }), 1_000);
});

t.test('1,000 valid callbacks for one video within 2 s: at most 2 extra polls', async (t) => {
  const gw = await callbackGateway(t);
  const video = await createVideo(gw);
  gw.clock.advance(2_000);
  await gw.poller.tick();
  const upstreamId = await upstreamIdOf(gw, video.id);
  const baseline = gw.sandbox.stats.queriesById.get(upstreamId) ?? 0;
  const token = await tokenOf(gw, video.id);
  const writes = storeWrites(t, gw);
  for (let index = 0; index < 1_000; index += 1) {
    const response = await postCallback(gw, token);
    if (response.statusCode !== 204) t.fail(`callback ${index}: ${response.statusCode}`);
    if (index % 10 === 0) await gw.poller.tick(); // the poller runs alongside
    gw.clock.advance(1.999); // 1,000 callbacks over 1,999 ms
  }
  await gw.poller.tick();
  gw.clock.advance(1);
  await gw.poller.tick();
  const extra = (gw.sandbox.stats.queriesById.get(upstreamId) ?? 0) - baseline;
  t.ok(extra >= 1 && extra <= 2, `${extra} extra polls`);
  t.ok(writes() <= 2 + 2, `${writes()} store writes: the hints and the polls' own`);
});

t.test('a callback body claiming completed for a running task: the fetch wins, the video stays running', async (t) => {
  const gw = await callbackGateway(t);
  const video = await createVideo(gw);
  gw.clock.advance(3_000);
  await gw.poller.tick();
  const claim = {
    id: await upstreamIdOf(gw, video.id),
    state: 'completed',
    video: { url: 'https://evil.example/v.mp4', width: 1, height: 1, download_url: 'https://evil.example/v.mp4' },
  };
  t.equal((await postCallback(gw, await tokenOf(gw, video.id), claim)).statusCode, 204);
  await gw.poller.tick();
  const read = await readVideo(gw, video.id);
  t.equal(read.status, 'processing');
  t.equal(read.result, null);
  t.notMatch(JSON.stringify(read), 'evil.example');
});

t.test('any body up to 64 KiB is accepted and ignored; a larger one is a 413', async (t) => {
  const gw = await callbackGateway(t);
  const token = await tokenOf(gw, (await createVideo(gw)).id);
  t.equal((await postCallback(gw, token, 'not json {', { 'content-type': 'application/json' })).statusCode, 204, 'broken JSON');
  t.equal((await postCallback(gw, token, 'a=b', { 'content-type': 'application/x-www-form-urlencoded' })).statusCode, 204, 'a form');
  t.equal((await gw.app.inject({ method: 'POST', url: `/upstream/callbacks/${token}` })).statusCode, 204, 'no body');
  t.equal((await postCallback(gw, token, 'x'.repeat(64 * 1024), { 'content-type': 'text/plain' })).statusCode, 204, '64 KiB');
  const big = await postCallback(gw, token, 'x'.repeat(64 * 1024 + 1), { 'content-type': 'application/json' });
  t.equal(big.statusCode, 413);
  t.match(big.json(), { code: 'payload_too_large' });
  t.equal((await gw.app.inject({ method: 'GET', url: `/upstream/callbacks/${token}` })).statusCode, 404, 'POST only');
});

t.test('a callback for a terminal or deleted video answers 204 and nothing happens', async (t) => {
  const gw = await callbackGateway(t);
  const done = await createVideo(gw);
  gw.sandbox.completeNow(await upstreamIdOf(gw, done.id));
  gw.clock.advance(2_000);
  await gw.poller.tick();
  t.equal((await readVideo(gw, done.id)).status, 'completed');
  const doneToken = await tokenOf(gw, done.id);

  const deleted = await createVideo(gw);
  const deletedToken = await tokenOf(gw, deleted.id);
  t.equal((await gw.app.inject({ method: 'DELETE', url: `/videos/${deleted.id}`, headers: auth() })).statusCode, 204);

  const stored = await gw.store.videos.get(done.id);
  const writes = storeWrites(t, gw);
  const requests = gw.sandbox.stats.requests;
  for (const token of [doneToken, deletedToken]) t.equal((await postCallback(gw, token)).statusCode, 204);
  t.equal(await gw.poller.tick(), 0, 'nothing to poll');
  t.equal(gw.sandbox.stats.requests, requests, 'no upstream call');
  t.equal(writes(), 0, 'no store write');
  t.same(await gw.store.videos.get(done.id), stored);
  t.equal(await gw.store.videos.get(deleted.id), undefined);
});

t.test('the callback route is left out of the public OpenAPI document', async (t) => {
  const gw = await callbackGateway(t);
  const document = await gw.app.inject({ method: 'GET', url: '/docs/json' });
  t.equal(document.statusCode, 200);
  t.notMatch(document.body, 'upstream/callbacks');
});

// ---- the simulator calls back, over real HTTP ----

t.test('callbacks flowing: a 60 s generation costs ≤ 3 queries and is completed within 1 s, webhook sent', async (t) => {
  const { gw, receiver, run } = await callbackFlow(t, gatewaySecret, { callbacks: true, baseUrl: true });
  const video = await createVideo(gw, { prompt: 'A tiger walking in snow', callbackUrl: `${receiver.url}/hooks` });
  const upstreamId = await upstreamIdOf(gw, video.id);
  const upstreamDoneAt = (gw.sandbox.tasks.get(upstreamId)?.createdAtMs ?? 0) + 60_000;
  await run(59_900);
  t.equal((await readVideo(gw, video.id)).status, 'processing');
  t.equal(receiver.requests.length, 0);
  await run(1_000);
  const read = await readVideo(gw, video.id);
  t.equal(read.status, 'completed');
  const completedAt = (await gw.store.videos.get(video.id))?.completedAt ?? Number.POSITIVE_INFINITY;
  t.ok(completedAt - upstreamDoneAt <= 1_000, `completed ${completedAt - upstreamDoneAt} ms after the upstream`);
  t.ok(gw.sandbox.stats.queries <= 3, `${gw.sandbox.stats.queries} upstream queries`);
  t.equal(gw.sandbox.stats.callbacksDelivered, 2, 'dreaming and completed, each answered 204');
  t.equal(receiver.requests.length, 1, 'the completed webhook left');
  t.match(JSON.parse(receiver.requests[0]?.body ?? '{}'), { type: 'video.completed', data: { id: video.id } });
  const samples = parsePrometheus(await gw.metrics.render());
  t.equal(sampleValue(samples, 'gateway_video_polls_count', { status: 'completed' }), 1);
  t.equal(sampleValue(samples, 'gateway_video_polls_sum', { status: 'completed' }), gw.sandbox.stats.queries);
});

t.test('a failed task calls back too, and the video fails at once', async (t) => {
  const { gw, run } = await callbackFlow(t, gatewaySecret, { callbacks: true, baseUrl: true });
  const video = await createVideo(gw, { prompt: 'A [fail] video' });
  await run(60_200);
  t.equal((await readVideo(gw, video.id)).status, 'failed');
  t.ok(gw.sandbox.stats.queries <= 3);
});

t.test('callbacks lost: the video still completes through the safety-net polls', async (t) => {
  const { gw, run } = await callbackFlow(t, gatewaySecret, { callbacks: false, baseUrl: true });
  const video = await createVideo(gw);
  await run(61_000, 250);
  t.equal((await readVideo(gw, video.id)).status, 'processing', 'no callback: not yet seen');
  await run(5_000, 250);
  t.equal((await readVideo(gw, video.id)).status, 'completed', 'the next safety-net poll finds it');
  t.equal(gw.sandbox.stats.callbacksSent, 0);
});

t.test('the simulator retries a refused callback 3 times, 100 ms apart, then gives up', async (t) => {
  const { gw, timers } = await callbackFlow(t, gatewaySecret, { callbacks: true, baseUrl: false });
  const target = await startScriptedServer();
  target.respond((_request, response) => sendText(response, 500, 'no'));
  t.teardown(() => target.close());
  const created = await fetch(`${gw.sandbox.url}/dream-machine/v1/generations`, {
    method: 'POST',
    headers: { authorization: 'Bearer elk-test-key-do-not-leak', 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'A direct task', callback_url: `${target.url}/cb` }),
  });
  t.equal(created.status, 201);
  timers.advance(2_000);
  await gw.sandbox.callbacksSettled();
  for (let retry = 0; retry < 3; retry += 1) {
    timers.advance(99);
    await gw.sandbox.callbacksSettled();
    t.equal(target.requests.length, retry + 1, 'not before 100 ms');
    timers.advance(1);
    await gw.sandbox.callbacksSettled();
  }
  t.equal(target.requests.length, 4, 'one attempt and 3 retries');
  t.equal(gw.sandbox.stats.callbacksFailed, 1);
  const sent = target.requests[0];
  t.equal(sent?.method, 'POST');
  t.equal(sent?.headers['webhook-signature'], undefined, 'unsigned, like Luma');
  t.match(JSON.parse(sent?.body ?? '{}'), { state: 'dreaming' });
});
