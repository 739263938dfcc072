import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import fastify from 'fastify';
import t from 'tap';
import { Client, request } from 'undici';

import { sandboxAssets, sandboxAssetsDir } from '../src/sandbox/assets.js';
import { type Sandbox, type SandboxOptions, startSandbox } from '../src/sandbox/simulator.js';
import { startTestGateway } from './helpers/gateway.js';
import { ManualClock } from './helpers/manual-time.js';

const ASSET_BASE = 'http://127.0.0.1:3000/sandbox/assets';
const GENERATIONS = '/dream-machine/v1/generations';
// Keys of the official create answer (upstream/fixtures/create-201.json).
const CREATE_201_KEYS = ['assets', 'created_at', 'failure_reason', 'id', 'request', 'state', 'version'];

interface Teardown {
  teardown(fn: () => unknown): void;
}

async function start(t: Teardown, options: Partial<SandboxOptions> = {}) {
  const clock = new ManualClock();
  const sandbox = await startSandbox({ assetBaseUrl: ASSET_BASE, clock, ...options });
  t.teardown(() => sandbox.close());
  return { sandbox, clock };
}

function create(sandbox: Sandbox, body: unknown = { prompt: 'A calm lake at dawn' }, headers = {}) {
  return request(`${sandbox.url}${GENERATIONS}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

function query(sandbox: Sandbox, id: string, headers = {}) {
  return request(`${sandbox.url}${GENERATIONS}/${id}`, { headers });
}

async function createdId(sandbox: Sandbox, prompt = 'A calm lake at dawn'): Promise<string> {
  const response = await create(sandbox, { prompt });
  const body = (await response.body.json()) as { id: string };
  return body.id;
}

async function queryJson(sandbox: Sandbox, id: string): Promise<Record<string, unknown>> {
  const response = await query(sandbox, id);
  const body = (await response.body.json()) as Record<string, unknown>;
  if (response.statusCode !== 200) throw new Error(`query answered ${response.statusCode}: ${JSON.stringify(body)}`);
  return body;
}

t.test('create answers 201 in the official shape', async (t) => {
  const { sandbox, clock } = await start(t);
  const response = await create(sandbox, {
    prompt: 'A serene lake surrounded by mountains at sunset',
    aspect_ratio: '9:16',
    loop: true,
    callback_url: 'https://example.com/luma-callback',
    model: 'ray-2',
  });
  t.equal(response.statusCode, 201);
  t.match(response.headers['content-type'], /^application\/json/);
  const body = (await response.body.json()) as Record<string, unknown>;
  t.same(Object.keys(body).sort(), CREATE_201_KEYS);
  t.match(body.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  t.same(
    { ...body, id: undefined },
    {
      id: undefined,
      state: 'queued',
      failure_reason: null,
      created_at: new Date(clock.now()).toISOString(),
      assets: null,
      version: null,
      request: {
        prompt: 'A serene lake surrounded by mountains at sunset',
        aspect_ratio: '9:16',
        loop: true,
        keyframes: null,
        callback_url: 'https://example.com/luma-callback',
        model: 'ray-2',
        // Settings left out are echoed with the defaults used, as Luma does.
        resolution: '720p',
        duration: '5s',
      },
    },
  );
  t.ok(sandbox.tasks.has(body.id as string));
});

t.test('create applies defaults and validates like Luma', async (t) => {
  const { sandbox } = await start(t);
  const defaults = (await (await create(sandbox, { prompt: 'abc' })).body.json()) as { request: unknown };
  t.same(defaults.request, {
    prompt: 'abc',
    aspect_ratio: '16:9',
    loop: false,
    keyframes: null,
    callback_url: null,
    model: 'ray-2',
    resolution: '720p',
    duration: '5s',
  });

  const cases: Array<[string, unknown, string]> = [
    ['prompt too short', { prompt: 'ab' }, 'prompt'],
    ['prompt too long', { prompt: 'x'.repeat(5001) }, 'prompt'],
    ['prompt missing', { loop: true }, 'prompt'],
    ['bad aspect ratio', { prompt: 'a cat', aspect_ratio: '2:1' }, 'aspect_ratio'],
    ['bad loop', { prompt: 'a cat', loop: 'yes' }, 'loop'],
    ['bad resolution', { prompt: 'a cat', resolution: '8k' }, 'resolution'],
    ['bad frame type', { prompt: 'a cat', keyframes: { frame0: { type: 'audio' } } }, 'keyframes.frame0'],
  ];
  for (const [name, body, param] of cases) {
    const response = await create(sandbox, body);
    t.equal(response.statusCode, 400, name);
    t.match(await response.body.json(), { error: { type: 'invalid_request_error', param, code: '' } }, name);
  }

  const notJson = await create(sandbox, '{"prompt": nope');
  t.equal(notJson.statusCode, 400);
  t.match(await notJson.body.json(), { error: { type: 'invalid_request_error' } });
  t.equal(sandbox.tasks.size, 1, 'refused requests create no task');
});

t.test('a [moderate] prompt is refused at create', async (t) => {
  const { sandbox } = await start(t);
  const response = await create(sandbox, { prompt: 'something [moderate] here' });
  t.equal(response.statusCode, 400);
  t.match(await response.body.json(), {
    error: { message: 'Advanced prompt moderation failed', type: 'invalid_request_error', param: 'prompt' },
  });
  t.equal(sandbox.tasks.size, 0);
});

t.test('generation keyframes must name a known generation', async (t) => {
  const { sandbox } = await start(t);
  const firstId = await createdId(sandbox);
  const keyframes = {
    frame0: { type: 'generation', id: firstId },
    frame1: { type: 'image', url: 'https://example.com/end.jpg' },
  };
  const ok = await create(sandbox, { prompt: 'continue it', keyframes });
  t.equal(ok.statusCode, 201);
  t.same(((await ok.body.json()) as { request: { keyframes: unknown } }).request.keyframes, keyframes);

  const unknown = await create(sandbox, {
    prompt: 'continue it',
    keyframes: { frame1: { type: 'generation', id: '00000000-0000-4000-8000-000000000000' } },
  });
  t.equal(unknown.statusCode, 400);
  t.match(await unknown.body.json(), { error: { param: 'keyframes.frame1' } });
});

t.test('query walks queued → dreaming → completed on the injected clock', async (t) => {
  const { sandbox, clock } = await start(t);
  const createdAt = new Date(clock.now()).toISOString();
  const id = await createdId(sandbox, 'A tiger walking in snow');

  t.same(await queryJson(sandbox, id), {
    id,
    liked: null,
    state: 'queued',
    video: null,
    prompt: 'A tiger walking in snow',
    thumbnail: null,
    video_raw: null,
    created_at: createdAt,
    last_frame: null,
    queue_state: null,
    estimate_wait_seconds: null,
  });

  clock.advance(2000); // queueMs
  t.match(await queryJson(sandbox, id), { state: 'dreaming', estimate_wait_seconds: 8, video: null });
  clock.advance(500);
  t.match(await queryJson(sandbox, id), { state: 'dreaming', estimate_wait_seconds: 8 }, 'rounded up');
  clock.advance(6501); // 9001 ms elapsed
  t.match(await queryJson(sandbox, id), { state: 'dreaming', estimate_wait_seconds: 1 });

  clock.advance(999); // 10 000 ms: durationMs
  const completed = await queryJson(sandbox, id);
  const video = completed.video as Record<string, unknown>;
  t.match(completed, {
    state: 'completed',
    estimate_wait_seconds: null,
    video_raw: null,
    liked: null,
    queue_state: null,
    created_at: createdAt,
    thumbnail: { url: `${ASSET_BASE}/thumbnail.jpg`, width: 640, height: 360 },
    last_frame: { url: `${ASSET_BASE}/thumbnail.jpg`, width: 640, height: 360 },
  });
  t.notOk('failure_reason' in completed);
  t.same(Object.keys(video).sort(), ['download_url', 'duration', 'height', 'url', 'width']);
  t.match(video, { url: `${ASSET_BASE}/sample.mp4`, width: 640, height: 360, duration: 5 });

  const downloadUrl = new URL(video.download_url as string);
  t.equal(`${downloadUrl.origin}${downloadUrl.pathname}`, `${ASSET_BASE}/sample.mp4`);
  t.equal(downloadUrl.searchParams.get('X-Amz-Date'), '20260101T000010Z', 'signed at the clock time');
  t.equal(downloadUrl.searchParams.get('X-Amz-Expires'), '3600');
  t.match(downloadUrl.searchParams.get('X-Amz-Signature'), /^[0-9a-f]{64}$/);

  clock.advance(3_000_000);
  const later = (await queryJson(sandbox, id)).video as { download_url: string };
  const laterUrl = new URL(later.download_url);
  t.equal(laterUrl.searchParams.get('X-Amz-Date'), '20260101T005010Z', 'signed afresh on every query');
  t.not(laterUrl.searchParams.get('X-Amz-Signature'), downloadUrl.searchParams.get('X-Amz-Signature'));
});

t.test('timing and estimate options', async (t) => {
  const { sandbox, clock } = await start(t, { queueMs: 0, durationMs: 3000, estimateWaitSeconds: 42 });
  const id = await createdId(sandbox);
  t.match(await queryJson(sandbox, id), { state: 'dreaming', estimate_wait_seconds: 42 });
  clock.advance(3000);
  t.match(await queryJson(sandbox, id), { state: 'completed' });
  await t.rejects(startSandbox({ assetBaseUrl: ASSET_BASE, errorRate: 2 }), RangeError);
});

t.test('a [fail] prompt ends failed with a reason', async (t) => {
  const { sandbox, clock } = await start(t);
  const id = await createdId(sandbox, 'this one will [fail]');
  clock.advance(5000);
  t.match(await queryJson(sandbox, id), { state: 'dreaming' });
  clock.advance(5000);
  t.match(await queryJson(sandbox, id), {
    state: 'failed',
    failure_reason: 'Simulated failure',
    video: null,
    thumbnail: null,
    last_frame: null,
    estimate_wait_seconds: null,
  });
});

t.test('unknown ids, forgotten tasks, wrong paths and methods', async (t) => {
  const { sandbox } = await start(t);
  const unknown = await query(sandbox, 'does-not-exist');
  t.equal(unknown.statusCode, 400);
  t.same(await unknown.body.json(), { code: 'task_not_exist', message: 'task_not_exist', data: null });

  const id = await createdId(sandbox);
  t.equal(sandbox.forget(id), true);
  const forgotten = await query(sandbox, id);
  t.equal(forgotten.statusCode, 400);
  t.match(await forgotten.body.json(), { code: 'task_not_exist' });

  const wrongPath = await request(`${sandbox.url}/v1/nothing-here`);
  t.equal(wrongPath.statusCode, 404);
  t.match(wrongPath.headers['content-type'], /^text\/html/);
  t.match(await wrongPath.body.text(), /<title>404 Not Found<\/title>/);

  const wrongMethod = await request(`${sandbox.url}${GENERATIONS}`, { method: 'GET' });
  t.equal(wrongMethod.statusCode, 405);
  t.equal(wrongMethod.headers.allow, 'POST');
  await wrongMethod.body.dump();
  const deleteQuery = await request(`${sandbox.url}${GENERATIONS}/${id}`, { method: 'DELETE' });
  t.equal(deleteQuery.statusCode, 405);
  t.equal(deleteQuery.headers.allow, 'GET');
  await deleteQuery.body.dump();
});

t.test('state overrides force completed / failed / unseen states now', async (t) => {
  const { sandbox } = await start(t);
  const id = await createdId(sandbox);
  sandbox.setTaskState(id, { state: 'processing' });
  t.match(await queryJson(sandbox, id), { state: 'processing', estimate_wait_seconds: 10 });
  t.equal(sandbox.currentState(id), 'processing');

  sandbox.completeNow(id);
  t.match(await queryJson(sandbox, id), { state: 'completed', video: { url: `${ASSET_BASE}/sample.mp4` } });

  sandbox.failNow(id, 'Advanced prompt moderation failed');
  t.match(await queryJson(sandbox, id), { state: 'failed', failure_reason: 'Advanced prompt moderation failed' });

  sandbox.setTaskState(id, null);
  t.equal(sandbox.currentState(id), 'queued', 'back to the clock');
  t.equal(sandbox.currentState('nope'), null);
  t.throws(() => sandbox.completeNow('nope'));
});

t.test('apiKey is enforced with the relay 401 body', async (t) => {
  const { sandbox } = await start(t, { apiKey: 'sk-sandbox' });
  const missing = await create(sandbox);
  t.equal(missing.statusCode, 401);
  t.match(await missing.body.json(), {
    error: { message: /^Invalid token \(request id: [0-9a-f]+\)$/, type: 'new_api_error', param: '', code: '' },
  });
  t.equal(sandbox.lastAuthorization, null);

  const wrong = await query(sandbox, 'x', { authorization: 'Bearer nope' });
  t.equal(wrong.statusCode, 401);
  await wrong.body.dump();
  t.equal(sandbox.lastAuthorization, 'Bearer nope');

  const ok = await create(sandbox, { prompt: 'with the key' }, { authorization: 'Bearer sk-sandbox' });
  t.equal(ok.statusCode, 201);
  await ok.body.dump();
  t.equal(sandbox.lastAuthorization, 'Bearer sk-sandbox');
});

t.test('errorRate answers transient 503s on creates and queries', async (t) => {
  const { sandbox } = await start(t, { errorRate: 1 });
  for (const response of [await create(sandbox), await query(sandbox, 'any-id')]) {
    t.equal(response.statusCode, 503);
    t.same(await response.body.json(), {
      error: { message: 'upstream overloaded', type: 'upstream_error', param: '', code: '' },
    });
  }
  t.equal(sandbox.tasks.size, 0);

  // The random source decides: 0.3 < 0.5 fails, 0.7 does not.
  const draws = [0.3, 0.7];
  const { sandbox: half } = await start(t, { errorRate: 0.5, random: () => draws.shift() ?? 0 });
  t.equal((await create(half)).statusCode, 503);
  t.equal((await create(half)).statusCode, 201);
});

t.test('faults: status, body and headers', async (t) => {
  const { sandbox } = await start(t);
  sandbox.injectFault({
    op: 'create',
    status: 429,
    headers: { 'retry-after': '7' },
    body: { error: { message: 'slow down', type: 'upstream_error', param: '', code: 'rate_limit_exceeded' } },
  });
  const limited = await create(sandbox);
  t.equal(limited.statusCode, 429);
  t.equal(limited.headers['retry-after'], '7');
  t.match(await limited.body.json(), { error: { code: 'rate_limit_exceeded' } });
  t.equal(sandbox.tasks.size, 0, 'a faulted create starts nothing');

  sandbox.injectFault({ op: 'query', status: 200, body: 'not json', headers: { 'content-type': 'application/json' } });
  const garbage = await query(sandbox, 'x');
  t.equal(garbage.statusCode, 200);
  t.equal(garbage.headers['content-type'], 'application/json');
  t.equal(await garbage.body.text(), 'not json');

  sandbox.injectFault({ op: 'any' });
  const defaulted = await query(sandbox, 'x');
  t.equal(defaulted.statusCode, 500);
  t.match(await defaulted.body.json(), { error: { type: 'upstream_error' } });
});

t.test('faults: html pages', async (t) => {
  const { sandbox } = await start(t);
  sandbox.injectFault({ op: 'query', html: true });
  const badGateway = await query(sandbox, 'x');
  t.equal(badGateway.statusCode, 502);
  t.match(badGateway.headers['content-type'], /^text\/html/);
  t.match(await badGateway.body.text(), /<title>502 Bad Gateway<\/title>/);

  sandbox.injectFault({ op: 'create', html: true, status: 524, body: '<html>timeout</html>' });
  const timeout = await create(sandbox);
  t.equal(timeout.statusCode, 524);
  t.match(timeout.headers['content-type'], /^text\/html/);
  t.equal(await timeout.body.text(), '<html>timeout</html>');
});

t.test('faults: delay before headers, alone or with an answer', async (t) => {
  const { sandbox } = await start(t);
  const id = await createdId(sandbox);

  sandbox.injectFault({ op: 'query', delayMs: 30 });
  let started = performance.now();
  t.match(await queryJson(sandbox, id), { state: 'queued' }, 'a delay-only fault then answers normally');
  t.ok(performance.now() - started >= 25, 'delayed');

  sandbox.injectFault({ op: 'query', delayMs: 30, status: 504 });
  started = performance.now();
  const slow = await query(sandbox, id);
  t.ok(performance.now() - started >= 25, 'delayed');
  t.equal(slow.statusCode, 504);
  await slow.body.dump();
});

t.test('faults: destroySocket is a network error', async (t) => {
  const { sandbox } = await start(t);
  sandbox.injectFault({ op: 'create', destroySocket: true });
  await t.rejects(create(sandbox));
  t.equal(sandbox.stats.creates, 1, 'the create reached the simulator');
  t.equal(sandbox.tasks.size, 0);
  const after = await create(sandbox);
  t.equal(after.statusCode, 201, 'the next request is served');
  await after.body.dump();
});

t.test('faults: times, FIFO and op matching', async (t) => {
  const { sandbox } = await start(t);
  const id = await createdId(sandbox);
  sandbox.injectFault({ op: 'create', status: 500 });
  sandbox.injectFault({ op: 'query', status: 502, times: 2 });
  sandbox.injectFault({ op: 'query', status: 503 });
  t.equal(sandbox.pendingFaults, 3);

  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) {
    const response = await query(sandbox, id);
    statuses.push(response.statusCode);
    await response.body.dump();
  }
  t.same(statuses, [502, 502, 503, 200], 'query faults in order, the create fault untouched');
  t.equal(sandbox.pendingFaults, 1);
  t.equal((await create(sandbox)).statusCode, 500);
  t.equal(sandbox.pendingFaults, 0);

  sandbox.injectFault({ op: 'query', status: 500 });
  sandbox.reset();
  t.equal(sandbox.pendingFaults, 0, 'reset clears faults');
  t.throws(() => sandbox.injectFault({ op: 'any', times: 0 }), RangeError);
});

t.test('stats count requests, creates and queries per id', async (t) => {
  const { sandbox } = await start(t);
  const stats = sandbox.stats;
  const id = await createdId(sandbox);
  await queryJson(sandbox, id);
  await queryJson(sandbox, id);
  await (await query(sandbox, 'other')).body.dump();
  await (await request(`${sandbox.url}/elsewhere`)).body.dump();

  t.equal(stats.requests, 5);
  t.equal(stats.creates, 1);
  t.equal(stats.queries, 3);
  t.equal(stats.queriesById.get(id), 2);
  t.equal(stats.queriesById.get('other'), 1);

  await create(sandbox, { prompt: 'abc' }, { authorization: 'Bearer k' });
  t.equal(sandbox.lastAuthorization, 'Bearer k');
  sandbox.reset();
  t.same(
    { requests: stats.requests, creates: stats.creates, queries: stats.queries, ids: stats.queriesById.size },
    { requests: 0, creates: 0, queries: 0, ids: 0 },
    'reset zeroes the same stats object',
  );
  t.equal(sandbox.lastAuthorization, null);
  t.ok(sandbox.tasks.has(id), 'tasks survive a reset');
});

t.test('latencyMs delays every answer', async (t) => {
  const { sandbox } = await start(t, { latencyMs: 30 });
  const started = performance.now();
  await (await query(sandbox, 'x')).body.dump();
  t.ok(performance.now() - started >= 25);
});

t.test('close() does not hang on keep-alive or parked requests', async (t) => {
  const clock = new ManualClock();
  const sandbox = await startSandbox({ assetBaseUrl: ASSET_BASE, clock, host: '127.0.0.1', port: 0 });
  t.match(sandbox.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.equal(sandbox.url, `http://127.0.0.1:${sandbox.port}`);

  const client = new Client(sandbox.url, { keepAliveTimeout: 60_000 });
  t.teardown(() => client.destroy());
  const response = await client.request({ path: `${GENERATIONS}/x`, method: 'GET' });
  await response.body.dump(); // the connection stays open, idle

  sandbox.injectFault({ op: 'query', delayMs: 60_000 });
  const parked = client.request({ path: `${GENERATIONS}/y`, method: 'GET' }).catch((error: unknown) => error);
  while (sandbox.stats.queries < 2) await new Promise((resolve) => setImmediate(resolve));

  // A close that waited for the parked request would hang for its 60 s delay (past the test's timeout).
  await sandbox.close();
  t.type(await parked, Error, 'the parked request fails instead of hanging');
  await sandbox.close(); // idempotent
});

// ---- assets served by the gateway ----

async function assetsApp(t: Teardown) {
  const app = fastify();
  await app.register(sandboxAssets);
  t.teardown(() => app.close());
  return app;
}

t.test('the committed assets exist and are what they claim', async (t) => {
  t.match(sandboxAssetsDir, /src[\\/]sandbox[\\/]assets$/);
  const video = await readFile(join(sandboxAssetsDir, 'sample.mp4'));
  t.equal(video.subarray(4, 8).toString('latin1'), 'ftyp');
  t.equal(video.subarray(36, 40).toString('latin1'), 'moov', 'faststart: moov before mdat');
  t.ok(video.length < 300 * 1024);
  const thumbnail = await readFile(join(sandboxAssetsDir, 'thumbnail.jpg'));
  t.same([...thumbnail.subarray(0, 2)], [0xff, 0xd8], 'JPEG magic');
});

t.test('GET the sample video whole', async (t) => {
  const app = await assetsApp(t);
  const file = await readFile(join(sandboxAssetsDir, 'sample.mp4'));
  const response = await app.inject({ url: '/sandbox/assets/sample.mp4?X-Amz-Date=20260101T000000Z' });
  t.equal(response.statusCode, 200);
  t.equal(response.headers['content-type'], 'video/mp4');
  t.equal(response.headers['content-length'], String(file.length));
  t.equal(response.headers['accept-ranges'], 'bytes');
  t.equal(response.headers['cache-control'], 'public, max-age=86400');
  t.ok(response.rawPayload.equals(file));

  // @fastify/static's validator is weak (size and mtime): right for If-None-Match, which compares weakly.
  const etag = response.headers.etag as string;
  t.match(etag, /^W\/"[\w-]+"$/);
  const notModified = await app.inject({ url: '/sandbox/assets/sample.mp4', headers: { 'if-none-match': etag } });
  t.equal(notModified.statusCode, 304);

  const head = await app.inject({ method: 'HEAD', url: '/sandbox/assets/sample.mp4' });
  t.equal(head.statusCode, 200);
  t.equal(head.headers['content-length'], String(file.length));
  t.equal(head.rawPayload.length, 0);
});

t.test('Range requests answer 206 (iOS needs them)', async (t) => {
  const app = await assetsApp(t);
  const file = await readFile(join(sandboxAssetsDir, 'sample.mp4'));
  const size = file.length;

  const probe = await app.inject({ url: '/sandbox/assets/sample.mp4', headers: { range: 'bytes=0-1' } });
  t.equal(probe.statusCode, 206);
  t.equal(probe.headers['content-range'], `bytes 0-1/${size}`);
  t.equal(probe.headers['content-length'], '2');
  t.equal(probe.headers['content-type'], 'video/mp4');
  t.ok(probe.rawPayload.equals(file.subarray(0, 2)));

  const middle = await app.inject({ url: '/sandbox/assets/sample.mp4', headers: { range: 'bytes=1000-' } });
  t.equal(middle.statusCode, 206);
  t.equal(middle.headers['content-range'], `bytes 1000-${size - 1}/${size}`);
  t.ok(middle.rawPayload.equals(file.subarray(1000)));

  const suffix = await app.inject({ url: '/sandbox/assets/sample.mp4', headers: { range: 'bytes=-100' } });
  t.equal(suffix.headers['content-range'], `bytes ${size - 100}-${size - 1}/${size}`);
  t.ok(suffix.rawPayload.equals(file.subarray(size - 100)));

  const beyond = await app.inject({ url: '/sandbox/assets/sample.mp4', headers: { range: `bytes=${size}-` } });
  t.equal(beyond.statusCode, 416);
  t.equal(beyond.headers['content-range'], `bytes */${size}`);

  const staleIfRange = await app.inject({
    url: '/sandbox/assets/sample.mp4',
    headers: { range: 'bytes=0-1', 'if-range': '"old"' },
  });
  t.equal(staleIfRange.statusCode, 200, 'If-Range mismatch sends the whole file');
  const freshIfRange = await app.inject({
    url: '/sandbox/assets/sample.mp4',
    headers: { range: 'bytes=0-1', 'if-range': probe.headers.etag as string },
  });
  t.equal(freshIfRange.statusCode, 206, 'If-Range with the current ETag resumes');

  const clamped = await app.inject({ url: '/sandbox/assets/sample.mp4', headers: { range: `bytes=5-${size + 100}` } });
  t.equal(clamped.headers['content-range'], `bytes 5-${size - 1}/${size}`, 'end clamped');
  t.equal((await app.inject({ url: '/sandbox/assets/sample.mp4', headers: { range: 'bytes=-0' } })).statusCode, 416);
  for (const ignored of ['bytes=0-1,4-5', 'items=0-1']) {
    const whole = await app.inject({ url: '/sandbox/assets/sample.mp4', headers: { range: ignored } });
    t.equal(whole.statusCode, 200, `${ignored}: the whole file`);
    t.equal(whole.headers['content-length'], String(size));
  }
});

t.test('in the gateway, an unsatisfiable range is a problem that still names the file length', async (t) => {
  const gw = await startTestGateway(t, { gateway: { serveSandboxAssets: true } });
  const size = (await readFile(join(sandboxAssetsDir, 'sample.mp4'))).length;
  const beyond = await gw.app.inject({ url: '/sandbox/assets/sample.mp4', headers: { range: `bytes=${size}-` } });
  t.equal(beyond.statusCode, 416);
  t.equal(beyond.headers['content-range'], `bytes */${size}`);
  t.equal(beyond.headers['content-type'], 'application/problem+json; charset=utf-8');
  t.equal(beyond.json().requestId, beyond.headers['x-request-id']);
  t.equal((await gw.app.inject({ url: '/sandbox/assets/other.mp4' })).json().code, 'not_found', 'unknown files: the app’s 404 problem');
});

t.test('thumbnail, unknown files and OpenAPI visibility', async (t) => {
  const app = await assetsApp(t);
  const thumbnail = await app.inject({ url: '/sandbox/assets/thumbnail.jpg' });
  t.equal(thumbnail.statusCode, 200);
  t.equal(thumbnail.headers['content-type'], 'image/jpeg');
  t.equal(thumbnail.headers['accept-ranges'], 'bytes');

  for (const file of ['other.mp4', 'constructor', '..%2Fassets.ts', '%2E%2E%2F%2E%2E%2Fpackage.json']) {
    const response = await app.inject({ url: `/sandbox/assets/${file}` });
    t.equal(response.statusCode, 404, file);
  }

  // Hidden from the OpenAPI document; also accepts an app typed with the TypeBox provider.
  const documented = fastify().withTypeProvider<TypeBoxTypeProvider>();
  t.teardown(() => documented.close());
  await documented.register(swagger, { openapi: { info: { title: 't', version: '1' } } });
  await documented.register(sandboxAssets);
  await documented.ready();
  t.same(Object.keys(documented.swagger().paths ?? {}), []);
});
