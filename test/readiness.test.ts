import t from 'tap';

import { createReadinessCheck } from '../src/readiness.js';
import type { CircuitState } from '../src/upstream/circuit-breaker.js';

const check = (options: { storeFails?: boolean; authFailingSince?: number | null; circuit?: CircuitState }) =>
  createReadinessCheck({
    pingStore: async () => {
      if (options.storeFails === true) throw new Error('SQLITE_BUSY');
    },
    health: { authFailingSince: () => options.authFailingSince ?? null },
    circuitState: () => options.circuit ?? 'closed',
  }).check();

t.test('ready only when the store answers and the upstream accepts our key; the circuit is reported, not judged', async (t) => {
  t.same(await check({}), { status: 'ready', checks: { store: 'ok', upstreamAuth: 'ok', upstreamCircuit: 'closed' } });
  t.same(await check({ circuit: 'open' }), { status: 'ready', checks: { store: 'ok', upstreamAuth: 'ok', upstreamCircuit: 'open' } });
  t.same(await check({ storeFails: true }), {
    status: 'not_ready',
    checks: { store: 'failing', upstreamAuth: 'ok', upstreamCircuit: 'closed' },
  });
  t.same(await check({ authFailingSince: 1_000, circuit: 'half_open' }), {
    status: 'not_ready',
    checks: { store: 'ok', upstreamAuth: 'refused', upstreamCircuit: 'half_open' },
  });
});

t.test('the store must also take a write: a heartbeat at most every 5 s while it works, at every check once it fails', async (t) => {
  let now = 1_000_000;
  const beats: number[] = [];
  let writesFail = false;
  const readiness = createReadinessCheck({
    pingStore: async () => {},
    writeHeartbeat: async (at) => {
      beats.push(at);
      if (writesFail) throw new Error('SQLITE_READONLY');
    },
    clock: { now: () => now },
    health: { authFailingSince: () => null },
    circuitState: () => 'closed',
  });
  t.equal((await readiness.check()).status, 'ready');
  now += 4_999;
  t.equal((await readiness.check()).status, 'ready');
  t.same(beats, [1_000_000], 'throttled while it works');
  now += 1;
  writesFail = true;
  t.same((await readiness.check()).checks.store, 'failing', 'a store that answers reads but refuses writes is not ready');
  t.same((await readiness.check()).checks.store, 'failing');
  t.equal(beats.length, 3, 'a failing store is written to at every check');
  writesFail = false;
  t.equal((await readiness.check()).status, 'ready', 'ready again at the first write that works');
});
