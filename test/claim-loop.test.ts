import t from 'tap';

import { createClaimLoop } from '../src/lib/claim-loop.js';
import { ManualClock, ManualTimers } from './helpers/manual-time.js';

t.test('stop() waits for a claim under way, and no claim starts after it', async (t) => {
  let release: () => void = () => {};
  let claims = 0;
  let launchedAfterStop = false;
  let stopped = false;
  const loop = createClaimLoop({
    tickMs: 1,
    onError: () => t.fail('no error expected'),
    launch: () => {
      claims += 1;
      if (stopped) launchedAfterStop = true;
      return new Promise<void>((resolve) => {
        release = resolve;
      });
    },
  });
  loop.start();
  t.equal(claims, 1, 'the first claim starts at once');
  let stopResolved = false;
  const stopping = loop.stop().then(() => {
    stopResolved = true;
  });
  stopped = true;
  await Promise.resolve();
  t.equal(stopResolved, false, 'stop waits while the claim is under way');
  release();
  await stopping;
  t.equal(stopResolved, true);
  t.equal(launchedAfterStop, false);
});

t.test('a failing claim is reported and the loop keeps its rhythm', async (t) => {
  const errors: unknown[] = [];
  const loop = createClaimLoop({
    tickMs: 1_000_000,
    onError: (error) => errors.push(error),
    launch: async () => Promise.reject(new Error('database locked')),
  });
  loop.start();
  await loop.stop();
  t.equal(errors.length, 1);
  t.match(String(errors[0]), /database locked/);
});

t.test('failing claims back off (tick × 2^failures, capped) and the rhythm resumes after one succeeds', async (t) => {
  const clock = new ManualClock(0);
  const timers = new ManualTimers(clock);
  let failing = true;
  const claimedAt: number[] = [];
  const loop = createClaimLoop({
    tickMs: 100,
    maxBackoffMs: 1_000,
    timers,
    onError: () => {},
    launch: async () => {
      claimedAt.push(clock.now());
      if (failing) throw new Error('connection terminated unexpectedly');
    },
  });
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };
  loop.start();
  await settle();
  for (let i = 0; i < 12; i++) {
    timers.advance(100);
    await settle();
    loop.wake(); // events keep arriving while the store is down
    await settle();
  }
  t.same(claimedAt, [0, 200, 600], 'waits 200, then 400, between failing claims; wakes are ignored');
  timers.advance(200);
  await settle();
  t.same(claimedAt, [0, 200, 600, 1_400], 'then 800');
  failing = false;
  timers.advance(999);
  await settle();
  t.equal(claimedAt.length, 4, 'then the cap (1000), not 1600');
  timers.advance(1);
  await settle();
  t.equal(claimedAt.at(-1), 2_400, 'the store is back: this claim succeeds');
  timers.advance(100);
  await settle();
  t.equal(claimedAt.at(-1), 2_500, 'back to one claim per tick');
  await loop.stop();
});
