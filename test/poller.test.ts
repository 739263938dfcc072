import { join } from 'node:path';

import t from 'tap';

import { createInProcessBus } from '../src/events/bus.js';
import { silentLogger } from '../src/lib/logger.js';
import { createPoller } from '../src/tracking/poller.js';
import type { UpstreamGeneration } from '../src/upstream/types.js';
import { advanceAndPoll, createVideo, readVideo, startTestGateway, upstreamIdOf } from './helpers/gateway.js';
import { until } from './helpers/until.js';

t.test('a video in flight when the process stops is polled again after restart', async (t) => {
  const sqlitePath = join(t.testdir(), 'restart.db');
  const first = await startTestGateway(t, { sqlitePath });
  const created = await createVideo(first);
  await advanceAndPoll(first, 3000);
  t.equal((await readVideo(first, created.id)).status, 'processing');
  await first.close();

  const second = await startTestGateway(t, { sqlitePath, clock: first.clock, sandboxInstance: first.sandbox });
  await advanceAndPoll(second, 15_000);
  const video = await readVideo(second, created.id);
  t.equal(video.status, 'completed');
});

t.test('a claimed video whose poll crashed is claimed again once its lease expires', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw);
  gw.clock.advance(2500);
  const claimed = await gw.store.videos.claimDue(gw.clock.now(), 10, 60_000); // a poller that then died
  t.equal(claimed.length, 1);
  await advanceAndPoll(gw, 30_000, 5000);
  t.equal((await readVideo(gw, created.id)).status, 'queued', 'not polled while the dead lease holds');
  t.equal(gw.sandbox.stats.queries, 0);
  await advanceAndPoll(gw, 40_000, 5000);
  t.equal((await readVideo(gw, created.id)).status, 'completed');
});

t.test('task_not_exist is retried for 60 s, then the video fails with upstream_lost', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw);
  gw.sandbox.forget(await upstreamIdOf(gw, created.id));
  await advanceAndPoll(gw, 50_000);
  t.equal((await readVideo(gw, created.id)).status, 'queued', 'still waiting within the grace period');
  await advanceAndPoll(gw, 30_000);
  const video = await readVideo(gw, created.id);
  t.equal(video.status, 'failed');
  t.equal(video.failure?.code, 'upstream_lost');
});

t.test('a just-created task that briefly answers task_not_exist still completes', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw);
  gw.sandbox.injectFault({ op: 'query', status: 400, body: { code: 'task_not_exist', message: 'task_not_exist', data: null }, times: 2 });
  await advanceAndPoll(gw, 30_000);
  t.equal((await readVideo(gw, created.id)).status, 'completed');
});

t.test('a video still running after TASK_TIMEOUT_MS fails with timed_out', async (t) => {
  const gw = await startTestGateway(t, { env: { TASK_TIMEOUT_MS: '2m' } });
  const created = await createVideo(gw);
  gw.sandbox.setTaskState(await upstreamIdOf(gw, created.id), { state: 'dreaming' });
  await advanceAndPoll(gw, 100_000, 5000);
  t.equal((await readVideo(gw, created.id)).status, 'processing');
  await advanceAndPoll(gw, 40_000, 5000);
  const video = await readVideo(gw, created.id);
  t.equal(video.status, 'failed');
  t.equal(video.failure?.code, 'timed_out');
});

t.test('a never-seen upstream state means processing', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw);
  gw.sandbox.setTaskState(await upstreamIdOf(gw, created.id), { state: 'upscaling' });
  await advanceAndPoll(gw, 3000);
  t.equal((await readVideo(gw, created.id)).status, 'processing');
});

t.test('terminal states never change: a late contradictory answer is ignored', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw);
  const claimedEarly = await (async () => {
    gw.clock.advance(2500);
    return gw.store.videos.claimDue(gw.clock.now(), 1, 1); // stale snapshot held by a slow poller
  })();
  await advanceAndPoll(gw, 15_000);
  t.equal((await readVideo(gw, created.id)).status, 'completed');
  const stale = claimedEarly[0];
  if (stale === undefined) throw new Error('expected a claim');
  const applied = await gw.store.videos.applyTransition(
    stale.id,
    gw.clock.now(),
    {
      status: 'failed',
      upstreamState: 'failed',
      estimatedWaitSeconds: null,
      result: null,
      failure: { code: 'upstream_failed', message: 'late' },
    },
    null,
    [],
  );
  t.equal(applied, undefined);
  t.equal((await readVideo(gw, created.id)).status, 'completed');
});

t.test('5xx bursts on queries are retried; polling recovers', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw);
  gw.sandbox.injectFault({ op: 'query', status: 503, times: 3 });
  gw.sandbox.injectFault({ op: 'query', html: true, status: 502, times: 3 });
  gw.sandbox.injectFault({ op: 'query', status: 200, body: '{"id": "broken', times: 1 });
  await advanceAndPoll(gw, 40_000);
  t.equal((await readVideo(gw, created.id)).status, 'completed');
  t.equal(gw.sandbox.pendingFaults, 0);
});

t.test('a 429 with a long Retry-After pauses all polling until it passes', async (t) => {
  const gw = await startTestGateway(t);
  await createVideo(gw);
  await createVideo(gw, { prompt: 'A second video' });
  gw.sandbox.injectFault({ op: 'query', status: 429, headers: { 'retry-after': '60' }, body: { error: { message: 'limit' } }, times: 10 });
  gw.clock.advance(2500);
  await gw.poller.tick();
  const queriesAfterLimit = gw.sandbox.stats.queries;
  await advanceAndPoll(gw, 50_000);
  t.equal(gw.sandbox.stats.queries, queriesAfterLimit, 'no query while paused');
  gw.sandbox.reset();
  await advanceAndPoll(gw, 30_000);
  t.ok(gw.sandbox.stats.queries > 0, 'polling resumes after Retry-After');
});

t.test('an upstream 401 never fails videos: readiness reports it and polling continues', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw);
  gw.sandbox.injectFault({ op: 'query', status: 401, body: { error: { message: 'Invalid token' } }, times: 5 });
  await advanceAndPoll(gw, 3000);
  const notReady = await gw.app.inject({ method: 'GET', url: '/readyz' });
  t.equal(notReady.statusCode, 503);
  t.equal(notReady.json().checks.upstreamAuth, 'refused');
  t.equal((await readVideo(gw, created.id)).status, 'queued');
  await advanceAndPoll(gw, 120_000, 5000);
  t.equal((await readVideo(gw, created.id)).status, 'completed', 'the key works again: videos finish');
  t.equal((await gw.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
});

t.test('POLL_CONCURRENCY caps polls in flight', async (t) => {
  const gw = await startTestGateway(t, { env: { POLL_CONCURRENCY: '2' } });
  for (let i = 0; i < 5; i++) await createVideo(gw, { prompt: `Video number ${i}` });
  gw.clock.advance(2500);
  t.equal(await gw.poller.tick(), 2);
  t.equal(gw.sandbox.stats.queries, 2);
});

t.test('a finished poll frees its slot for the next due video at once, not at the next tick', async (t) => {
  const gw = await startTestGateway(t);
  for (let i = 0; i < 5; i++) await createVideo(gw, { prompt: `Video number ${i}` });
  gw.clock.advance(2500);
  // Polls the test answers one by one; the tick is far away, so only a finished poll can start the next one.
  const held: Array<() => void> = [];
  const polled: string[] = [];
  const poller = createPoller({
    videos: gw.store.videos,
    upstream: {
      createGeneration: () => Promise.reject(new Error('not used')),
      async getGeneration(upstreamId) {
        polled.push(upstreamId);
        await new Promise<void>((resolve) => held.push(resolve));
        const generation: UpstreamGeneration = {
          upstreamId,
          state: 'dreaming',
          status: 'processing',
          estimateWaitSeconds: null,
          failureReason: null,
          video: null,
          rawVideo: null,
          thumbnail: null,
          lastFrame: null,
        };
        return generation;
      },
      close: async () => {},
    },
    bus: createInProcessBus(),
    clock: gw.clock,
    random: () => 0.5,
    newMessageId: () => 'msg_test',
    logger: silentLogger,
    policy: { schedule: { minMs: 2000, maxMs: 30_000 }, taskTimeoutMs: 3_600_000, notFoundGraceMs: 60_000 },
    concurrency: 2,
    leaseMs: 60_000,
    tickMs: 1_000_000_000,
  });
  poller.start();
  t.teardown(() => {
    for (const release of held) release();
    return poller.stop();
  });
  await until(() => polled.length === 2, 'the first claim');
  t.equal(poller.inFlight(), 2, 'POLL_CONCURRENCY in flight');
  held[0]?.();
  await until(() => polled.length === 3, 'a re-claim when a poll finished');
  held[1]?.();
  held[2]?.();
  await until(() => polled.length === 5, 'every due video polled');
  t.equal(new Set(polled).size, 5, 'each video once');
  t.ok(poller.inFlight() <= 2, 'never more than POLL_CONCURRENCY in flight');
});

t.test('the first poll honours the upstream estimate, polls back off ×1.5 up to the maximum', async (t) => {
  const gw = await startTestGateway(t, { sandbox: { queueMs: 0, durationMs: 600_000, estimateWaitSeconds: null } });
  await createVideo(gw);
  const seen: number[] = [];
  let last = gw.sandbox.stats.queries;
  for (let elapsed = 0; elapsed < 120_000; elapsed += 250) {
    gw.clock.advance(250);
    await gw.poller.tick();
    if (gw.sandbox.stats.queries !== last) {
      seen.push(elapsed + 250);
      last = gw.sandbox.stats.queries;
    }
  }
  const gaps = seen.slice(1).map((at, index) => at - (seen[index] ?? 0));
  t.equal(seen[0], 2000, 'first poll after 2 s');
  t.same(gaps.slice(0, 4), [3000, 4500, 6750, 10_250], 'grows ×1.5 (rounded up to the 250 ms tick)');
  t.ok(
    gaps.slice(5).every((gap) => gap === 15_000),
    'capped at POLL_INTERVAL_MAX_MS',
  );
});

t.test('two pollers racing on one video emit its processing event once', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw, {
    prompt: 'Race me',
    callbackUrl: 'https://example.com/hook',
    webhookEvents: ['video.processing'],
  });
  const transition = { status: 'processing' as const, upstreamState: 'dreaming', estimatedWaitSeconds: 5, result: null, failure: null };
  const now = gw.clock.now();
  // Both pollers read the video as queued and decided the same transition.
  const apply = (messageId: string) =>
    gw.store.videos.applyTransition(created.id, now, transition, now + 1000, [{ messageId, eventType: 'video.processing' }], 'queued');
  const first = await apply('msg_A');
  const second = await apply('msg_B');
  t.equal(first?.status, 'processing');
  t.equal(second, undefined, 'the second poller saw a stale status: nothing applied');
});
