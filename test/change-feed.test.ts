/*
 * The change feed between replicas (issue 8 item 4): two gateways share one store, as replicas share Postgres;
 * only B listens. A's changes are announced with a plain `SELECT pg_notify(…)` exactly as the Postgres store
 * announces them (id and version, never content), so B's waiters, cache and dispatcher can only learn of them
 * through the real LISTEN connection.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

import type pg from 'pg';
import t, { type Test } from 'tap';
import { request } from 'undici';

import type { Video } from '../schemas/video.js';
import { createClientRegistry } from '../src/auth/clients.js';
import {
  createPgChangeListener,
  deliveriesDueChannel,
  parseNotification,
  type PgChangeListener,
  videoChangedChannel,
} from '../src/events/pg-listener.js';
import { reconnectDelayMs } from '../src/events/reconnect-backoff.js';
import { silentLogger } from '../src/lib/logger.js';
import { auth, createVideo, startTestGateway, testClientsFile, type TestGateway, upstreamIdOf } from './helpers/gateway.js';
import { ManualClock, ManualTimers } from './helpers/manual-time.js';
import { postgresClient, requirePostgres } from './helpers/pg-available.js';
import { parsePrometheus, sampleValue } from './helpers/prometheus.js';
import { sseBlocks } from './helpers/sse-blocks.js';
import { until } from './helpers/until.js';

t.test('notification payloads: id and version, anything else is malformed', async (t) => {
  t.same(parseNotification(videoChangedChannel, '{"id":"vid_1","version":3}'), { kind: 'video_changed', id: 'vid_1', version: 3 });
  t.same(parseNotification(deliveriesDueChannel, ''), { kind: 'deliveries_due' });
  t.same(parseNotification(deliveriesDueChannel, undefined), { kind: 'deliveries_due' });
  t.same(parseNotification('someone_else', 'x'), { kind: 'other' });
  for (const payload of [
    undefined,
    '',
    'not json',
    'null',
    '[]',
    '"vid_1"',
    '{"id":"vid_1"}',
    '{"id":"","version":1}',
    '{"id":7,"version":1}',
  ])
    t.same(parseNotification(videoChangedChannel, payload), { kind: 'malformed', channel: videoChangedChannel }, String(payload));
  for (const version of ['"2"', '0', '-1', '1.5', '1e300'])
    t.equal(parseNotification(videoChangedChannel, `{"id":"vid_1","version":${version}}`).kind, 'malformed', `version ${version}`);
  t.equal(parseNotification(videoChangedChannel, JSON.stringify({ id: 'x'.repeat(201), version: 1 })).kind, 'malformed', 'id too long');
});

t.test('reconnect backoff: doubles from 100 ms up to 10 s, spread ±20 %', async (t) => {
  const middle = (): number => 0.5;
  t.same(
    [1, 2, 3, 4, 5, 6, 7, 8, 9].map((attempt) => reconnectDelayMs(attempt, middle)),
    [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000],
  );
  t.equal(
    reconnectDelayMs(1, () => 0),
    80,
  );
  t.equal(
    reconnectDelayMs(1, () => 0.999_999),
    120,
  );
  t.equal(
    reconnectDelayMs(10_000, () => 0.999_999),
    12_000,
    'no overflow after many attempts',
  );
  t.equal(reconnectDelayMs(0, middle), 100, 'attempt 0 reads as the first');
});

const databaseUrl = await requirePostgres(t);

interface Replicas {
  a: TestGateway;
  b: TestGateway & { timers: ManualTimers };
  feed: PgChangeListener;
  /** Timers of B's feed only (reconnect backoff), on a clock of their own. */
  feedTimers: ManualTimers;
  /** Times B's feed woke B's dispatcher. */
  dispatcherWakes: () => number;
  notifier: pg.Client;
  /** Announces a video's current version, as the Postgres store does in the change's transaction. */
  announce(videoId: string): Promise<number>;
  metric(name: string, labels?: Record<string, string>): Promise<number | undefined>;
}

/** A and B on one SQLite file, one sandbox and one clock; B's long-poll timers are manual, so only a change ends a wait. */
async function startReplicas(t: Test, url: string): Promise<Replicas> {
  const clock = new ManualClock(Date.parse('2026-11-29T12:00:00.000Z'));
  const sqlitePath = join(t.testdir(), 'shared.db');
  const a = await startTestGateway(t, { clock, sqlitePath });
  const timers = new ManualTimers(clock);
  const gatewayB = await startTestGateway(t, {
    clock,
    sqlitePath,
    sandboxInstance: a.sandbox,
    gateway: { timers, clients: createClientRegistry(testClientsFile) },
  });
  const b = { ...gatewayB, timers };
  const feedTimers = new ManualTimers(new ManualClock());
  let wakes = 0;
  const feed = createPgChangeListener({
    connectionString: url,
    applicationName: `vg-test-listen-${randomBytes(4).toString('hex')}`,
    bus: b.bus,
    videos: b.store.videos,
    cache: b.videos,
    wakeDispatcher: () => {
      wakes += 1;
      b.dispatcher.wake();
    },
    timers: feedTimers,
    random: () => 0.5,
    logger: silentLogger,
    registry: b.metrics.registry,
  });
  await feed.start();
  t.teardown(() => feed.close());
  t.ok(feed.connected, 'B listens');
  const notifier = await postgresClient(t, url);
  return {
    a,
    b,
    feed,
    feedTimers,
    dispatcherWakes: () => wakes,
    notifier,
    async announce(videoId) {
      const record = await a.store.videos.get(videoId);
      if (record === undefined) throw new Error(`no video ${videoId}`);
      await notifier.query('SELECT pg_notify($1, $2)', [videoChangedChannel, JSON.stringify({ id: videoId, version: record.version })]);
      return record.version;
    },
    async metric(name, labels) {
      return sampleValue(parsePrometheus(await b.metrics.render()), name, labels);
    },
  };
}

/** A's poller takes one step for the video (queued → processing → completed as the sandbox says). */
async function stepOnA(replicas: Replicas, completeId?: string): Promise<void> {
  const { a } = replicas;
  if (completeId !== undefined) a.sandbox.completeNow(await upstreamIdOf(a, completeId));
  a.clock.advance(completeId === undefined ? 2_000 : 16_000);
  await a.poller.tick();
}

const statusOf = (block: string | null): string => {
  const data = (block ?? '').split('\n').find((line) => line.startsWith('data: '));
  return data === undefined ? `(no event: ${block})` : (JSON.parse(data.slice(6)) as Video).status;
};

if (databaseUrl !== null) {
  t.test('a change announced by another replica answers a long-poll held here', async (t) => {
    const replicas = await startReplicas(t, databaseUrl);
    const { b } = replicas;
    const created = await createVideo(replicas.a);
    let answered = false;
    const waiting = b.app.inject({ method: 'GET', url: `/videos/${created.id}?wait=30`, headers: auth() }).finally(() => {
      answered = true;
    });
    await until(() => b.bus.listenerCount(created.id) === 1, 'the long-poll on B subscribed');

    await stepOnA(replicas);
    t.equal((await replicas.a.store.videos.get(created.id))?.status, 'processing', 'A moved the video');
    await new Promise((resolve) => setImmediate(resolve));
    t.notOk(answered, 'without an announcement B cannot know');

    await replicas.announce(created.id);
    const response = await waiting;
    t.equal(response.statusCode, 200);
    t.equal(response.json<Video>().status, 'processing');
    t.equal(b.bus.listenerCount(created.id), 0, 'the waiter let go');
  });

  t.test('a video deleted through another replica answers a long-poll held here with 404', async (t) => {
    const replicas = await startReplicas(t, databaseUrl);
    const { a, b } = replicas;
    const created = await createVideo(a);
    const waiting = b.app.inject({ method: 'GET', url: `/videos/${created.id}?wait=30`, headers: auth() });
    await until(() => b.bus.listenerCount(created.id) === 1, 'the long-poll on B subscribed');

    const deleted = await a.app.inject({ method: 'DELETE', url: `/videos/${created.id}`, headers: auth() });
    t.equal(deleted.statusCode, 204, 'deleted through A');
    const tombstone = await a.store.videos.tombstone(created.id);
    t.ok(tombstone, 'A left a tombstone');
    await replicas.notifier.query('SELECT pg_notify($1, $2)', [
      videoChangedChannel,
      JSON.stringify({ id: created.id, version: tombstone?.version ?? 0 }),
    ]);
    const response = await waiting;
    t.equal(response.statusCode, 404, 'the waiter on B learns the video is gone');
    t.equal(b.bus.listenerCount(created.id), 0, 'the waiter let go');
  });

  t.test('an SSE stream held here sends each change announced by another replica, then ends', async (t) => {
    const replicas = await startReplicas(t, databaseUrl);
    const { b } = replicas;
    const created = await createVideo(replicas.a);
    const base = await b.app.listen({ port: 0, host: '127.0.0.1' });
    const response = await request(`${base}/videos/${created.id}/events`, { headers: auth() });
    t.equal(response.statusCode, 200);
    const blocks = sseBlocks(response.body);
    t.equal(statusOf(await blocks.next()), 'queued', 'the current state first');

    await stepOnA(replicas);
    await replicas.announce(created.id);
    t.equal(statusOf(await blocks.next()), 'processing');

    await stepOnA(replicas, created.id);
    t.equal((await replicas.a.store.videos.get(created.id))?.status, 'completed', 'A finished it');
    await replicas.announce(created.id);
    t.equal(statusOf(await blocks.next()), 'completed');
    t.equal(await blocks.next(), null, 'the stream ends after the terminal event');
  });

  t.test('a cached body is evicted when a newer version is announced, kept for an old one', async (t) => {
    const replicas = await startReplicas(t, databaseUrl);
    const { a, b } = replicas;
    const created = await createVideo(a);
    await stepOnA(replicas, created.id);
    const get = async (): Promise<string> => (await b.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() })).body;
    const before = await get();
    t.equal((JSON.parse(before) as Video).status, 'completed');
    t.equal(b.videos.cacheStats().size, 1, 'B cached the finished body');

    // A refreshes the download URL: a new version with a new body, which B's cache still hides.
    const record = await a.store.videos.get(created.id);
    if (record?.result == null) throw new Error('no result');
    const { result } = record;
    await a.store.videos.refreshResult(created.id, a.clock.now(), {
      ...result,
      video: { ...result.video, downloadUrl: `${result.video.downloadUrl}&fresh=1` },
    });
    t.equal(await get(), before, 'served from B’s cache');

    // An announcement of the version B already holds changes nothing. Notifications arrive in order: once the
    // unreadable probe sent after it is counted, the old announcement has been handled.
    await replicas.notifier.query('SELECT pg_notify($1, $2)', [
      videoChangedChannel,
      JSON.stringify({ id: created.id, version: record.version }),
    ]);
    await replicas.notifier.query('SELECT pg_notify($1, $2)', [videoChangedChannel, 'probe']);
    await until(
      async () => (await replicas.metric('gateway_change_feed_malformed_total', { channel: videoChangedChannel })) === 1,
      'the probe arrived',
    );
    t.equal(b.videos.cacheStats().size, 1, 'an old version does not evict');
    t.equal(await get(), before, 'still served from B’s cache');

    const version = await replicas.announce(created.id);
    t.ok(version > record.version);
    await until(() => b.videos.cacheStats().size === 0, 'B evicted the body');
    const after = await get();
    t.not(after, before);
    t.match(after, /fresh=1/, 'B serves the body A stored');
  });

  t.test('due deliveries wake the dispatcher; unreadable payloads are counted and ignored', async (t) => {
    const replicas = await startReplicas(t, databaseUrl);
    const wakesBefore = replicas.dispatcherWakes();
    await replicas.notifier.query('SELECT pg_notify($1, $2)', [deliveriesDueChannel, '']);
    await until(() => replicas.dispatcherWakes() > wakesBefore, 'B’s dispatcher woken');

    for (const payload of ['not json', '{"id":"vid_1"}', '{"id":"vid_1","version":"2"}'])
      await replicas.notifier.query('SELECT pg_notify($1, $2)', [videoChangedChannel, payload]);
    await until(
      async () => (await replicas.metric('gateway_change_feed_malformed_total', { channel: videoChangedChannel })) === 3,
      'three malformed notifications counted',
    );
    t.ok(replicas.feed.connected, 'still listening');

    // And the feed still works.
    const created = await createVideo(replicas.a);
    const waiting = replicas.b.app.inject({ method: 'GET', url: `/videos/${created.id}?wait=30`, headers: auth() });
    await until(() => replicas.b.bus.listenerCount(created.id) === 1, 'the long-poll on B subscribed');
    await stepOnA(replicas);
    await replicas.announce(created.id);
    t.equal((await waiting).json<Video>().status, 'processing');
  });

  t.test('a killed LISTEN connection comes back: the cache is emptied and every waiter re-reads', async (t) => {
    const replicas = await startReplicas(t, databaseUrl);
    const { a, b, feed, feedTimers } = replicas;
    const finished = await createVideo(a);
    await stepOnA(replicas, finished.id);
    await b.app.inject({ method: 'GET', url: `/videos/${finished.id}`, headers: auth() });
    t.equal(b.videos.cacheStats().size, 1, 'B cached a finished body');
    const running = await createVideo(a, { prompt: 'Still running' });
    const waiting = b.app.inject({ method: 'GET', url: `/videos/${running.id}?wait=30`, headers: auth() });
    await until(() => b.bus.listenerCount(running.id) === 1, 'the long-poll on B subscribed');
    const wakesBefore = replicas.dispatcherWakes();

    const killed = await replicas.notifier.query<{ killed: boolean }>(
      'SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = $1',
      [feed.applicationName],
    );
    t.same(
      killed.rows.map((row) => row.killed),
      [true],
      'exactly one backend: the listener’s',
    );
    await until(() => !feed.connected, 'B noticed the lost connection');
    t.equal(await replicas.metric('gateway_change_feed_connected'), 0);

    // A change made while B was deaf: its announcement is lost.
    await stepOnA(replicas);
    await replicas.announce(running.id);
    t.equal(feedTimers.pending(), 1, 'one reconnect scheduled');
    feedTimers.advance(99);
    t.notOk(feed.connected, 'not before the backoff');
    feedTimers.advance(1);
    await until(() => feed.connected, 'B listens again');

    const response = await waiting;
    t.equal(response.json<Video>().status, 'processing', 'the waiter re-read and saw the missed change');
    t.equal(b.videos.cacheStats().size, 0, 'the cache was emptied');
    t.ok(replicas.dispatcherWakes() > wakesBefore, 'the dispatcher looked for missed deliveries');
    t.equal(await replicas.metric('gateway_change_feed_reconnects_total'), 1);
    t.equal(await replicas.metric('gateway_change_feed_connected'), 1);
  });

  t.test('a replica that cannot reach Postgres keeps retrying with backoff and never throws', async (t) => {
    const clock = new ManualClock();
    const timers = new ManualTimers(clock);
    const gw = await startTestGateway(t);
    const feed = createPgChangeListener({
      connectionString: 'postgres://postgres@127.0.0.1:1/test', // nothing listens on port 1
      bus: gw.bus,
      videos: gw.store.videos,
      cache: gw.videos,
      wakeDispatcher: () => {},
      timers,
      random: () => 0.5,
      logger: silentLogger,
    });
    t.teardown(() => feed.close());
    await feed.start();
    t.notOk(feed.connected);
    t.equal(timers.pending(), 1, 'a retry is scheduled');
    timers.advance(100);
    t.equal(timers.pending(), 0, 'the second attempt runs');
    await until(() => timers.pending() === 1, 'the second attempt failed and scheduled a third');
    timers.advance(199);
    t.equal(timers.pending(), 1, 'the third waits twice as long');
    timers.advance(1);
    await until(() => timers.pending() === 1, 'the third attempt failed too');
    await feed.close();
    t.equal(timers.pending(), 0, 'close cancels the retry');
  });
}
