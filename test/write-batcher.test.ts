import t from 'tap';

import { createWriteBatcher } from '../src/lib/write-batcher.js';

t.test('writes issued together share one call, each caller gets its own answer', async (t) => {
  const calls: number[][] = [];
  const write = createWriteBatcher(async (items: readonly number[]) => {
    calls.push([...items]);
    return items.map((item) => item * 10);
  });
  t.same(await Promise.all([write(1), write(2), write(3)]), [10, 20, 30]);
  t.same(calls, [[1, 2, 3]], 'one write for the three');
  t.equal(await write(4), 40);
  t.same(calls[1], [4]);
});

t.test('writes arriving while a batch is written go into the next batch, none lost', async (t) => {
  const calls: number[][] = [];
  let release: () => void = () => {};
  const write = createWriteBatcher(async (items: readonly number[]) => {
    calls.push([...items]);
    if (calls.length === 1) await new Promise<void>((resolve) => (release = resolve));
    return items;
  });
  const first = write(1);
  await new Promise((resolve) => setImmediate(resolve));
  const later = [write(2), write(3)];
  release();
  t.same(await Promise.all([first, ...later]), [1, 2, 3]);
  t.same(calls, [[1], [2, 3]]);
});

t.test('a failing batch is retried one by one: only the bad write fails', async (t) => {
  const write = createWriteBatcher(async (items: readonly number[]) => {
    if (items.includes(2)) throw new Error('constraint failed');
    return items;
  });
  const results = await Promise.allSettled([write(1), write(2), write(3)]);
  t.same(
    results.map((result) => result.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  );
});
