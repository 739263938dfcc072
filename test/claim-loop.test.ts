import t from 'tap';

import { createClaimLoop } from '../src/lib/claim-loop.js';

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
