import t from 'tap';

import type { Video } from '../schemas/video.js';
import { advanceAndPoll, auth, createVideo, startTestGateway } from './helpers/gateway.js';

t.test('POST /videos answers 202 with Location and the queued Video, with defaults applied', async (t) => {
  const gw = await startTestGateway(t);
  const response = await gw.app.inject({
    method: 'POST',
    url: '/videos',
    headers: auth(),
    payload: { prompt: '  A serene lake at sunset  ', metadata: { userId: 'u_42' } },
  });
  t.equal(response.statusCode, 202);
  const video = response.json<Video>();
  t.match(video.id, /^vid_[0-9A-Z]{26}$/);
  t.equal(response.headers.location, `/videos/${video.id}`);
  t.equal(video.status, 'queued');
  t.equal(video.prompt, 'A serene lake at sunset', 'prompt is trimmed');
  t.equal(video.aspectRatio, '16:9');
  t.equal(video.loop, false);
  t.same(video.webhookEvents, ['video.completed', 'video.failed']);
  t.same(video.metadata, { userId: 'u_42' });
  t.equal(video.result, null);
  t.equal(video.completedAt, null);
  t.equal(gw.sandbox.stats.creates, 1);
  t.equal(gw.sandbox.lastAuthorization, 'Bearer elk-test-key-do-not-leak', 'the gateway sends its own key upstream');
  t.notMatch(response.body, /elk-test-key|[0-9a-f]{8}-[0-9a-f]{4}-/, 'neither the key nor the upstream id leaks');
});

t.test('passes model, resolution, duration and image keyframes through in the upstream shape', async (t) => {
  const gw = await startTestGateway(t);
  const video = await createVideo(gw, {
    prompt: 'A fox in the forest',
    aspectRatio: '9:16',
    loop: true,
    model: 'ray-2',
    resolution: '720p',
    duration: '5s',
    keyframes: { start: { imageUrl: 'https://example.com/start.jpg' } },
  });
  const [task] = [...gw.sandbox.tasks.values()];
  t.ok(task);
  t.same(task?.request, {
    prompt: 'A fox in the forest',
    aspect_ratio: '9:16',
    loop: true,
    keyframes: { frame0: { type: 'image', url: 'https://example.com/start.jpg' } },
    callback_url: null,
    model: 'ray-2',
    resolution: '720p',
    duration: '5s',
  });
  t.equal(video.status, 'queued');
});

t.test('a videoId keyframe resolves to the upstream id of the caller’s own completed video only', async (t) => {
  const gw = await startTestGateway(t);
  const first = await createVideo(gw);
  const running = await gw.app.inject({
    method: 'POST',
    url: '/videos',
    headers: auth(),
    payload: { prompt: 'Continue the scene', keyframes: { start: { videoId: first.id } } },
  });
  t.equal(running.statusCode, 400, 'a running video cannot be a keyframe');
  t.equal(running.json().errors[0].path, '/body/keyframes/start/videoId');

  await advanceAndPoll(gw, 11_000);
  const asBob = await gw.app.inject({
    method: 'POST',
    url: '/videos',
    headers: auth('bob'),
    payload: { prompt: 'Continue the scene', keyframes: { end: { videoId: first.id } } },
  });
  t.equal(asBob.statusCode, 400, "another client's video is refused");
  t.equal(gw.sandbox.stats.creates, 1, 'refused requests never reach the upstream');

  const own = await createVideo(gw, { prompt: 'Continue the scene', keyframes: { end: { videoId: first.id } } });
  t.equal(own.status, 'queued');
  const upstreamFirst = [...gw.sandbox.tasks.values()][0];
  const upstreamSecond = [...gw.sandbox.tasks.values()][1];
  t.same(upstreamSecond?.request.keyframes, { frame1: { type: 'generation', id: upstreamFirst?.id } });
});

t.test('a video goes queued → processing → completed with playable URLs, polled by the gateway', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw);
  const read = async () => (await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() })).json<Video>();

  await advanceAndPoll(gw, 3000);
  const processing = await read();
  t.equal(processing.status, 'processing');
  t.type(processing.estimatedWaitSeconds, 'number');

  await advanceAndPoll(gw, 20_000);
  const completed = await read();
  t.equal(completed.status, 'completed');
  t.match(completed.result?.video.url, /^http:\/\/127\.0\.0\.1:3000\/sandbox\/assets\/sample\.mp4$/);
  t.match(completed.result?.video.downloadUrl, /X-Amz-Expires=3600/);
  t.type(completed.result?.video.durationSeconds, 'number');
  t.ok(completed.completedAt);
  t.equal(completed.estimatedWaitSeconds, null);
});

t.test('GET never calls the upstream for a running video', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw);
  const before = gw.sandbox.stats.queries;
  for (let i = 0; i < 20; i++) {
    const response = await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() });
    t.equal(response.statusCode, 200);
    t.equal(response.headers['cache-control'], 'private, no-cache');
  }
  t.equal(gw.sandbox.stats.queries, before, 'zero upstream queries for 20 reads');
});

t.test('a failed generation ends failed with the upstream reason', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw, { prompt: 'Something that fails [fail]' });
  await advanceAndPoll(gw, 25_000);
  const video = (await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() })).json<Video>();
  t.equal(video.status, 'failed');
  t.same(video.failure, { code: 'upstream_failed', message: 'Simulated failure' });
  t.equal(video.result, null);
});

t.test('terminal videos come from the cache with a strong ETag, 304 on If-None-Match, and bounded max-age', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw);
  await advanceAndPoll(gw, 15_000);
  const first = await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() });
  t.equal(first.statusCode, 200);
  const etag = first.headers.etag;
  t.match(etag, /^"[A-Za-z0-9_-]+"$/, 'strong ETag');
  const cacheControl = String(first.headers['cache-control']);
  t.match(cacheControl, /^private, max-age=\d+$/);
  const expiresAt = Date.parse(first.json<Video>().result?.video.downloadUrlExpiresAt ?? '');
  const maxAge = Number(cacheControl.split('=')[1]);
  t.ok(gw.clock.now() + maxAge * 1000 <= expiresAt, 'max-age never outlives the download URL');

  const statsBefore = gw.videos.cacheStats();
  const second = await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() });
  t.equal(second.body, first.body, 'same bytes');
  t.equal(gw.videos.cacheStats().hits, statsBefore.hits + 1, 'served from the LRU cache');

  const notModified = await gw.app.inject({
    method: 'GET',
    url: `/videos/${created.id}`,
    headers: { ...auth(), 'if-none-match': String(etag) },
  });
  t.equal(notModified.statusCode, 304);
  t.equal(notModified.body, '');
  t.equal(notModified.headers.etag, etag);
  // RFC 9110 §8.6: a 304's Content-Length could only be the 200's; a wrong one stalls HTTP clients waiting for bytes.
  t.equal(notModified.headers['content-length'], undefined, 'a 304 sends no content-length');
  t.equal(notModified.headers['content-type'], undefined, 'a 304 sends no content-type');

  const otherTag = await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: { ...auth(), 'if-none-match': '"nope"' } });
  t.equal(otherTag.statusCode, 200);
});

t.test('another client’s video answers 404 exactly like an unknown id, cached or not', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw);
  const unknown = await gw.app.inject({ method: 'GET', url: '/videos/vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC', headers: auth('bob') });
  const running = await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth('bob') });
  await advanceAndPoll(gw, 15_000);
  await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() }); // now cached
  const cached = await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth('bob') });
  for (const response of [unknown, running, cached]) {
    t.equal(response.statusCode, 404);
    t.equal(response.json().code, 'not_found');
    t.equal(response.json().detail, unknown.json().detail);
  }
});

t.test('missing or unknown keys answer 401 problems on every /videos route', async (t) => {
  const gw = await startTestGateway(t);
  const cases = [
    { method: 'POST' as const, url: '/videos', headers: {} },
    { method: 'GET' as const, url: '/videos/vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC', headers: { authorization: 'Bearer vgk_wrong' } },
    { method: 'GET' as const, url: '/videos/vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC', headers: { authorization: `Basic ${clientKeysBasic()}` } },
  ];
  for (const request of cases) {
    const response = await gw.app.inject({ ...request, payload: request.method === 'POST' ? { prompt: 'hello there' } : undefined });
    t.equal(response.statusCode, 401);
    t.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8');
    t.equal(response.json().code, 'unauthorized');
  }
  t.equal(gw.sandbox.stats.creates, 0);
});

function clientKeysBasic(): string {
  return Buffer.from('alice:secret').toString('base64');
}

t.test('a download URL about to expire is refreshed with exactly one upstream call for 100 concurrent readers', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw);
  await advanceAndPoll(gw, 15_000);
  const first = (await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() })).json<Video>();
  const expiresAt = Date.parse(first.result?.video.downloadUrlExpiresAt ?? '');

  // 56 minutes later the signed URL has less than 5 minutes left.
  gw.clock.set(expiresAt - 4 * 60_000);
  const queriesBefore = gw.sandbox.stats.queries;
  const responses = await Promise.all(
    Array.from({ length: 100 }, () => gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() })),
  );
  t.equal(gw.sandbox.stats.queries - queriesBefore, 1, 'one upstream call');
  const bodies = responses.map((response) => response.json<Video>());
  t.ok(bodies.every((body) => body.result?.video.downloadUrlExpiresAt === bodies[0]?.result?.video.downloadUrlExpiresAt));
  const refreshedExpiry = Date.parse(bodies[0]?.result?.video.downloadUrlExpiresAt ?? '');
  t.equal(refreshedExpiry, gw.clock.now() + 3600_000, 'fresh signature: one hour from now');
  t.not(bodies[0]?.result?.video.downloadUrl, first.result?.video.downloadUrl);

  const again = await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() });
  t.equal(gw.sandbox.stats.queries - queriesBefore, 1, 'the refreshed URL is stored and cached');
  t.equal(again.json<Video>().result?.video.downloadUrl, bodies[0]?.result?.video.downloadUrl);
});

t.test('a failed refresh still serves the stored URL', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw);
  await advanceAndPoll(gw, 15_000);
  const first = (await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() })).json<Video>();
  gw.clock.set(Date.parse(first.result?.video.downloadUrlExpiresAt ?? '') - 60_000);
  gw.sandbox.injectFault({ op: 'query', status: 500, times: 10 });
  const response = await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() });
  t.equal(response.statusCode, 200);
  t.equal(response.json<Video>().result?.video.downloadUrl, first.result?.video.downloadUrl);
});

t.test('a refresh that cannot renew the download URL is not retried on every read', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw);
  await advanceAndPoll(gw, 15_000);
  const first = (await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() })).json<Video>();
  gw.clock.set(Date.parse(first.result?.video.downloadUrlExpiresAt ?? '') - 4 * 60_000);
  // Old generations are purged upstream: every refresh answers task_not_exist.
  for (const id of [...gw.sandbox.tasks.keys()]) gw.sandbox.forget(id);
  const queriesBefore = gw.sandbox.stats.queries;
  for (let i = 0; i < 5; i++) {
    const response = await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() });
    t.equal(response.statusCode, 200);
    t.equal(response.json<Video>().result?.video.downloadUrl, first.result?.video.downloadUrl, 'the stored URL is served');
    gw.clock.advance(1_000);
  }
  t.equal(gw.sandbox.stats.queries - queriesBefore, 1, 'a client polling GET does not turn into one upstream call per read');

  gw.clock.advance(60_000);
  await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() });
  t.equal(gw.sandbox.stats.queries - queriesBefore, 2, 'tried again a minute later');
});
