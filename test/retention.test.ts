import { join } from 'node:path';

import t, { type Test } from 'tap';

import type { Problem } from '../schemas/problem.js';
import { createInProcessBus } from '../src/events/bus.js';
import { silentLogger } from '../src/lib/logger.js';
import type { VideoRepository } from '../src/store/repositories.js';
import { openSqliteStore } from '../src/store/sqlite.js';
import { createVideoRetention } from '../src/videos/retention.js';
import { auth, createVideo, startTestGateway, upstreamIdOf } from './helpers/gateway.js';
import { ManualClock, ManualTimers } from './helpers/manual-time.js';
import { newVideo, T0 } from './helpers/store-contract.js';
import { until } from './helpers/until.js';

/* VIDEO_RETENTION (DESIGN §2.4): terminal videos past the age are erased in bounded batches; running ones never. */

const DAY_MS = 86_400_000;
const completed = {
  status: 'completed' as const,
  upstreamState: 'completed',
  estimatedWaitSeconds: null,
  result: null,
  failure: null,
};

async function seededStore(t: Test) {
  const store = await openSqliteStore({ path: join(t.testdir(), 'gateway.db') });
  t.teardown(() => store.close());
  const finished = async (completedAt: number) => {
    const video = await store.videos.insert(newVideo({ createdAt: T0 }));
    await store.videos.applyTransition(video.id, completedAt, completed, null, []);
    return video.id;
  };
  const expired: string[] = [];
  for (let i = 0; i < 5; i++) expired.push(await finished(T0 + i));
  const recent = await finished(T0 + DAY_MS);
  const running = (await store.videos.insert(newVideo({ createdAt: T0 - 30 * DAY_MS }))).id;
  return { store, expired, recent, running };
}

t.test('the sweeper erases terminal videos past the age, a bounded batch per transaction, on its timer', async (t) => {
  const { store, expired, recent, running } = await seededStore(t);
  const clock = new ManualClock(T0 + DAY_MS + 10); // the five are older than 1 day; `recent` is not
  const timers = new ManualTimers(clock);
  const bus = createInProcessBus();
  const erased: string[] = [];
  bus.subscribeAll(({ deleted }) => {
    if (deleted !== undefined) erased.push(deleted.id);
  });
  // The real repository, watched: each call's limit and how many it erased.
  const batches: Array<{ limit: number; erased: number }> = [];
  const videos: Pick<VideoRepository, 'eraseTerminalBefore'> = {
    async eraseTerminalBefore(before, limit, now) {
      const tombstones = await store.videos.eraseTerminalBefore(before, limit, now);
      batches.push({ limit, erased: tombstones.length });
      return tombstones;
    },
  };
  const retention = createVideoRetention({
    videos,
    bus,
    clock,
    timers,
    logger: silentLogger,
    retentionMs: DAY_MS,
    batchSize: 2,
    maxBatchesPerSweep: 2,
    everyMs: 60_000,
  });
  retention.start();
  t.teardown(() => retention.stop());

  timers.advance(59_999);
  t.same(batches, [], 'nothing before the first sweep is due');
  timers.advance(1);
  await until(() => batches.length === 2, 'the first sweep');
  t.same(batches, [
    { limit: 2, erased: 2 },
    { limit: 2, erased: 2 },
  ]);
  t.same(erased, expired.slice(0, 4), 'oldest first; each erasure published for caches and waiters');

  timers.advance(60_000);
  await until(() => batches.length === 3, 'the second sweep');
  t.same(batches[2], { limit: 2, erased: 1 }, 'a short batch ends the sweep');
  t.same(erased, expired);
  for (const id of expired) t.equal(await store.videos.get(id), undefined, `${id} erased`);
  t.ok(await store.videos.get(recent), 'a video completed less than the retention ago is kept');
  t.ok(await store.videos.get(running), 'a running video is never erased, however old');

  t.equal(await retention.sweep(), 0, 'nothing left');
  clock.advance(DAY_MS);
  t.equal(await retention.sweep(), 1, 'once old enough, the recent one goes too');
  t.ok(await store.videos.get(running), 'the running one stays');
});

t.test('VIDEO_RETENTION on the gateway: expired videos answer 404, others are untouched; unset keeps all', async (t) => {
  const gw = await startTestGateway(t, { env: { VIDEO_RETENTION: '30d' } });
  const old = await createVideo(gw, { prompt: 'Finished a month ago' });
  const stillRunning = await createVideo(gw, { prompt: 'Stuck upstream' });
  gw.sandbox.completeNow(await upstreamIdOf(gw, old.id));
  gw.clock.advance(2_000);
  await gw.poller.tick();
  const fresh = await createVideo(gw, { prompt: 'Finished just now' });
  gw.clock.advance(30 * DAY_MS + 1);
  // Completed without a poll: the poller would fail the other running video for its age (TASK_TIMEOUT_MS).
  await gw.store.videos.applyTransition(fresh.id, gw.clock.now(), completed, null, []);

  const read = (id: string) => gw.app.inject({ method: 'GET', url: `/videos/${id}`, headers: auth() });
  t.equal((await read(old.id)).statusCode, 200, 'cached before the sweep');
  if (gw.retention === null) throw new Error('retention is off');
  t.equal(await gw.retention.sweep(), 1);
  const gone = await read(old.id);
  t.equal(gone.statusCode, 404, 'the expired video is gone, cache included');
  t.match(gone.json<Problem>(), { code: 'not_found' });
  t.equal((await read(fresh.id)).statusCode, 200, 'a recently completed video stays');
  t.equal((await read(stillRunning.id)).statusCode, 200, 'a running video stays');

  const keeping = await startTestGateway(t);
  t.equal(keeping.retention, null, 'unset: no sweeper, videos are kept');
});
