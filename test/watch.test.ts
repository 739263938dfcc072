import t, { type Test } from 'tap';
import { Agent, request } from 'undici';

import type { Problem } from '../schemas/problem.js';
import type { Video } from '../schemas/video.js';
import { appServer } from '../src/auth/caller.js';
import { createClientRegistry } from '../src/auth/clients.js';
import { createInProcessBus } from '../src/events/bus.js';
import { formatSseEvent, sseKeepAlive } from '../src/http/sse.js';
import type { VideoRecord } from '../src/store/records.js';
import { etagOf, type RenderedVideo, toVideo } from '../src/videos/present.js';
import { createVideoWatch } from '../src/videos/watch.js';
import { auth, clientKeys, createVideo, startTestGateway, testClientsFile, type TestGateway, upstreamIdOf } from './helpers/gateway.js';
import { ManualClock, ManualTimers } from './helpers/manual-time.js';
import { videoRequest } from './helpers/records.js';
import { sseBlocks } from './helpers/sse-blocks.js';
import { until } from './helpers/until.js';

/** A gateway whose long-poll and keep-alive timers the test fires by hand (the clock moves with them). */
async function startWatchGateway(t: Test, rateLimitPerMinute?: number): Promise<TestGateway & { timers: ManualTimers }> {
  const clock = new ManualClock(Date.parse('2026-11-29T12:00:00.000Z'));
  const timers = new ManualTimers(clock);
  const clients =
    rateLimitPerMinute === undefined
      ? createClientRegistry(testClientsFile)
      : createClientRegistry({ clients: testClientsFile.clients.map((client) => ({ ...client, rateLimitPerMinute })) });
  const gw = await startTestGateway(t, { clock, gateway: { timers, clients } });
  return { ...gw, timers };
}

/** Finishes the upstream task now and lets the poller pick it up: exactly one upstream query. */
async function completeViaPoller(gw: TestGateway, videoId: string): Promise<void> {
  gw.sandbox.completeNow(await upstreamIdOf(gw, videoId));
  gw.clock.advance(2_000);
  await gw.poller.tick();
}

async function listen(t: Test, gw: TestGateway): Promise<string> {
  const address = await gw.app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => gw.app.close());
  return address;
}

const parseStatusEvent = (block: string | null): { event: string; id: string; video: Video } => {
  const lines = (block ?? '').split('\n');
  const field = (name: string) => lines.find((line) => line.startsWith(`${name}: `))?.slice(name.length + 2) ?? '';
  return { event: field('event'), id: field('id'), video: JSON.parse(field('data')) as Video };
};

t.test('SSE framing', async (t) => {
  t.equal(formatSseEvent({ event: 'status', id: '7', data: '{"a":1}' }), 'event: status\nid: 7\ndata: {"a":1}\n\n');
  t.equal(formatSseEvent({ event: 'x', data: 'one\ntwo' }), 'event: x\ndata: one\ndata: two\n\n', 'one data line per line');
  t.equal(sseKeepAlive, ': keep-alive\n\n');
});

t.test('a change published while the first read is in flight still wakes the waiter (no lost wake-up)', async (t) => {
  const clock = new ManualClock(Date.parse('2026-11-29T12:00:00.000Z'));
  const timers = new ManualTimers(clock);
  const bus = createInProcessBus();
  const record = (status: VideoRecord['status']): VideoRecord => ({
    id: 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC',
    clientId: 'alice',
    endUserId: null,
    upstreamId: 'up-1',
    status,
    upstreamState: null,
    request: videoRequest({ prompt: 'A tiger', webhookEvents: ['video.completed'] }),
    estimatedWaitSeconds: null,
    result: null,
    failure: null,
    createdAt: clock.now(),
    updatedAt: clock.now(),
    completedAt: null,
    nextPollAt: clock.now(),
    pollAttempts: 0,
    notFoundSince: null,
    leaseUntil: null,
    version: 1,
  });
  const present = (stored: VideoRecord): RenderedVideo => {
    const body = JSON.stringify(toVideo(stored));
    return {
      clientId: stored.clientId,
      endUserId: stored.endUserId,
      video: toVideo(stored),
      body,
      etag: etagOf(body),
      terminal: false,
      downloadUrlExpiresAt: null,
      version: stored.version,
    };
  };
  const watch = createVideoWatch({
    bus,
    timers,
    videos: {
      present,
      // The read sees the old state; the poller commits and publishes before the read returns.
      read: async () => {
        const stale = present(record('queued'));
        bus.publish({ video: record('processing') });
        return stale;
      },
    },
  });
  const client = createClientRegistry(testClientsFile).get('alice');
  if (client === undefined) throw new Error('no alice');
  const answer = await watch.waitForChange(appServer(client), 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC', {
    waitMs: 30_000,
    signal: new AbortController().signal,
  });
  t.equal(answer.video.status, 'processing', 'answered at once with the change');
  t.equal(bus.listenerCount('vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC'), 0);
  t.equal(timers.pending(), 0);
});

t.test('?wait=N answers as soon as the status changes, without an upstream call', async (t) => {
  const gw = await startWatchGateway(t);
  const prompt = 'A tiger walking in snow';
  const created = await createVideo(gw, { prompt });
  const queriesBefore = gw.sandbox.stats.queries;
  const waiting = gw.app.inject({ method: 'GET', url: `/videos/${created.id}?wait=30`, headers: auth() });
  await until(() => gw.bus.listenerCount(created.id) === 1, 'the waiter subscribed');
  t.equal(gw.sandbox.stats.queries, queriesBefore, 'waiting costs no upstream call');

  await completeViaPoller(gw, created.id);
  const response = await waiting;
  t.equal(response.statusCode, 200);
  t.equal(response.json<Video>().status, 'completed');
  t.match(response.headers['cache-control'], /^private, max-age=\d+$/);
  t.ok(response.headers.etag);
  t.equal(gw.sandbox.stats.queries - queriesBefore, 1, 'only the poller’s own query');
  t.equal(gw.bus.listenerCount(created.id), 0, 'listener removed');
  t.equal(gw.timers.pending(), 0, 'timer cancelled');
});

t.test('?wait=N without a change answers after N seconds with the current state', async (t) => {
  const gw = await startWatchGateway(t);
  const created = await createVideo(gw);
  let settled = false;
  const waiting = gw.app.inject({ method: 'GET', url: `/videos/${created.id}?wait=5`, headers: auth() }).finally(() => {
    settled = true;
  });
  await until(() => gw.bus.listenerCount(created.id) === 1, 'the waiter subscribed');
  gw.timers.advance(4_999);
  await new Promise((resolve) => setImmediate(resolve));
  t.notOk(settled, 'still waiting before N seconds');
  gw.timers.advance(1);
  const response = await waiting;
  t.equal(response.statusCode, 200);
  t.equal(response.json<Video>().status, 'queued');
  t.equal(response.headers['cache-control'], 'private, no-cache');
  t.equal(gw.bus.listenerCount(created.id), 0);
});

t.test('?wait=N: a terminal video, a stale If-None-Match or an unknown id answer at once', async (t) => {
  const gw = await startWatchGateway(t);
  const prompt = 'Something quick';
  const created = await createVideo(gw, { prompt });
  const first = await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() });

  gw.clock.advance(2_000);
  await gw.poller.tick(); // queued → processing: the client's copy is now stale
  const stale = await gw.app.inject({
    method: 'GET',
    url: `/videos/${created.id}?wait=60`,
    headers: { ...auth(), 'if-none-match': String(first.headers.etag) },
  });
  t.equal(stale.statusCode, 200, 'answered at once: the client’s copy is out of date');
  t.equal(stale.json<Video>().status, 'processing');

  // A current If-None-Match waits; when nothing changed, the answer is 304.
  const current = gw.app.inject({
    method: 'GET',
    url: `/videos/${created.id}?wait=10`,
    headers: { ...auth(), 'if-none-match': String(stale.headers.etag) },
  });
  await until(() => gw.bus.listenerCount(created.id) === 1, 'the waiter subscribed');
  gw.timers.advance(10_000);
  t.equal((await current).statusCode, 304);

  await completeViaPoller(gw, created.id);
  const terminal = await gw.app.inject({ method: 'GET', url: `/videos/${created.id}?wait=60`, headers: auth() });
  t.equal(terminal.statusCode, 200);
  t.equal(terminal.json<Video>().status, 'completed');

  const asBob = await gw.app.inject({ method: 'GET', url: `/videos/${created.id}?wait=60`, headers: auth('bob') });
  t.equal(asBob.statusCode, 404);
  t.equal(asBob.json().code, 'not_found');
  t.equal(gw.bus.listenerCount(created.id), 0, 'no listener left by any of them');
  t.equal(gw.timers.pending(), 0);
});

t.test('?wait outside 1..60 → 400', async (t) => {
  const gw = await startWatchGateway(t);
  const created = await createVideo(gw);
  for (const wait of ['0', '61', 'soon', '1.5']) {
    const response = await gw.app.inject({ method: 'GET', url: `/videos/${created.id}?wait=${wait}`, headers: auth() });
    t.equal(response.statusCode, 400, wait);
    t.equal(response.json().errors[0].path, '/querystring/wait');
  }
});

t.test('1,000 concurrent long-polls on one video: zero extra upstream calls, no listener left', async (t) => {
  const gw = await startWatchGateway(t, 5_000);
  const prompt = 'A very popular video';
  const created = await createVideo(gw, { prompt });
  const base = await listen(t, gw);
  const agent = new Agent({ connections: 1_100 });
  t.teardown(() => agent.close());
  const listenersBefore = gw.bus.listenerCount();
  const queriesBefore = gw.sandbox.stats.queries;

  const responses = Array.from({ length: 1_000 }, () =>
    request(`${base}/videos/${created.id}?wait=60`, { dispatcher: agent, headers: { authorization: `Bearer ${clientKeys.alice}` } }).then(
      async ({ statusCode, body }) => ({ statusCode, video: (await body.json()) as Video }),
    ),
  );
  await until(() => gw.bus.listenerCount(created.id) === 1_000, '1,000 waiters subscribed');
  t.equal(gw.sandbox.stats.queries, queriesBefore, 'a thousand waiters cost no upstream call');

  await completeViaPoller(gw, created.id);
  const answers = await Promise.all(responses);
  t.ok(
    answers.every((answer) => answer.statusCode === 200 && answer.video.status === 'completed'),
    'all 1,000 woke with the completed video',
  );
  t.equal(gw.sandbox.stats.queries - queriesBefore, 1, 'the poller’s single query, nothing else');
  t.equal(gw.bus.listenerCount(created.id), 0, 'no listener left');
  t.equal(gw.bus.listenerCount(), listenersBefore);
  t.equal(gw.timers.pending(), 0, 'no timer left');
});

t.test('a client that disconnects mid-wait releases its listener and timer at once', async (t) => {
  const gw = await startWatchGateway(t);
  const created = await createVideo(gw);
  const base = await listen(t, gw);
  const abort = new AbortController();
  const waiting = request(`${base}/videos/${created.id}?wait=60`, { headers: auth(), signal: abort.signal });
  await until(() => gw.bus.listenerCount(created.id) === 1, 'the waiter subscribed');
  t.equal(gw.timers.pending(), 1);
  abort.abort();
  await t.rejects(waiting);
  await until(() => gw.bus.listenerCount(created.id) === 0, 'the listener is removed');
  t.equal(gw.timers.pending(), 0);
});

t.test('SSE: the current state on connect, one event per status change, closed after the terminal event', async (t) => {
  const gw = await startWatchGateway(t);
  const prompt = 'A streamed generation';
  const created = await createVideo(gw, { prompt });
  const base = await listen(t, gw);
  const queriesBefore = gw.sandbox.stats.queries;
  const response = await request(`${base}/videos/${created.id}/events`, { headers: { ...auth(), 'x-request-id': 'sse-test-1' } });
  t.equal(response.statusCode, 200);
  t.equal(response.headers['content-type'], 'text/event-stream; charset=utf-8');
  t.equal(response.headers['cache-control'], 'no-cache');
  t.equal(response.headers['x-accel-buffering'], 'no');
  t.equal(response.headers['x-request-id'], 'sse-test-1');
  t.ok(response.headers['x-ratelimit-remaining'], 'rate-limit headers carried over');
  const blocks = sseBlocks(response.body);

  const initial = parseStatusEvent(await blocks.next());
  t.equal(initial.event, 'status');
  t.equal(initial.video.id, created.id);
  t.equal(initial.video.status, 'queued');
  t.equal(initial.id, String(Date.parse(initial.video.updatedAt)), 'id: the updatedAt in epoch ms');

  gw.clock.advance(2_000);
  await gw.poller.tick();
  t.equal(parseStatusEvent(await blocks.next()).video.status, 'processing');

  // The keep-alive interval started with the stream; the poller is not ticked meanwhile.
  gw.timers.advance(13_000);
  t.equal(await blocks.next(), ': keep-alive', 'keep-alive comment 15 s after connecting');

  gw.sandbox.completeNow(await upstreamIdOf(gw, created.id));
  gw.clock.advance(5_000);
  await gw.poller.tick();
  t.equal(parseStatusEvent(await blocks.next()).video.status, 'completed');
  t.equal(await blocks.next(), null, 'the stream ends after the terminal event');
  t.equal(gw.sandbox.stats.queries - queriesBefore, 2, 'only the poller’s queries');
  t.equal(gw.bus.listenerCount(created.id), 0);
  t.equal(gw.timers.pending(), 0, 'keep-alive timer cancelled');
});

t.test('SSE: a terminal video gets one event and the end; an unknown one a 404 problem, not a stream', async (t) => {
  const gw = await startWatchGateway(t);
  const prompt = 'Already done';
  const created = await createVideo(gw, { prompt });
  await completeViaPoller(gw, created.id);
  const base = await listen(t, gw);

  const done = await request(`${base}/videos/${created.id}/events`, { headers: auth() });
  const blocks = sseBlocks(done.body);
  t.equal(parseStatusEvent(await blocks.next()).video.status, 'completed');
  t.equal(await blocks.next(), null);

  const unknown = await request(`${base}/videos/${created.id}/events`, { headers: auth('bob') });
  t.equal(unknown.statusCode, 404);
  t.equal(unknown.headers['content-type'], 'application/problem+json; charset=utf-8');
  t.equal(((await unknown.body.json()) as Problem).code, 'not_found');
  const unauthenticated = await request(`${base}/videos/${created.id}/events`);
  t.equal(unauthenticated.statusCode, 401);
  await unauthenticated.body.dump();
  t.equal(gw.bus.listenerCount(created.id), 0);
  t.equal(gw.timers.pending(), 0);
});

t.test('SSE: HEAD answers the stream headers and ends, holding no listener or keep-alive', async (t) => {
  const gw = await startWatchGateway(t);
  const created = await createVideo(gw);
  const base = await listen(t, gw);
  const head = await request(`${base}/videos/${created.id}/events`, {
    method: 'HEAD',
    headers: auth(),
    headersTimeout: 5_000,
    bodyTimeout: 5_000,
  });
  t.equal(head.statusCode, 200);
  t.equal(head.headers['content-type'], 'text/event-stream; charset=utf-8');
  await head.body.dump();
  t.equal(gw.bus.listenerCount(created.id), 0, 'no listener for a response without a body');
  t.equal(gw.timers.pending(), 0, 'no keep-alive timer');
});

t.test('SSE: a client that disconnects mid-stream releases its listener and keep-alive', async (t) => {
  const gw = await startWatchGateway(t);
  const created = await createVideo(gw);
  const base = await listen(t, gw);
  const abort = new AbortController();
  const response = await request(`${base}/videos/${created.id}/events`, { headers: auth(), signal: abort.signal });
  const blocks = sseBlocks(response.body);
  t.equal(parseStatusEvent(await blocks.next()).video.status, 'queued');
  t.equal(gw.bus.listenerCount(created.id), 1);
  t.equal(gw.timers.pending(), 1);
  abort.abort();
  await until(() => gw.bus.listenerCount(created.id) === 0, 'the listener is removed');
  t.equal(gw.timers.pending(), 0);
});

t.test('shutting down answers open long-polls and ends open streams instead of waiting for them', async (t) => {
  const gw = await startWatchGateway(t);
  const created = await createVideo(gw);
  const base = await listen(t, gw);
  const longPoll = request(`${base}/videos/${created.id}?wait=60`, { headers: auth() });
  const stream = await request(`${base}/videos/${created.id}/events`, { headers: auth() });
  const blocks = sseBlocks(stream.body);
  t.equal(parseStatusEvent(await blocks.next()).video.status, 'queued');
  await until(() => gw.bus.listenerCount(created.id) === 2, 'both waiters subscribed');

  await gw.close();
  const answered = await longPoll;
  t.equal(answered.statusCode, 200, 'the long-poll got the current state');
  t.equal(((await answered.body.json()) as Video).status, 'queued');
  t.equal(await blocks.next(), null, 'the stream ended (an EventSource reconnects elsewhere)');
  t.equal(gw.bus.listenerCount(created.id), 0);
  t.equal(gw.timers.pending(), 0);
});
