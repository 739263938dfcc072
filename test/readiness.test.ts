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
