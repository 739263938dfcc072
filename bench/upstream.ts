// The sandbox simulator in a process of its own, for figures that count upstream traffic: the gateway then
// runs exactly as in production (ELKAPI_BASE_URL + a key), the simulator's memory is not the gateway's, and its
// counters are readable from outside at `GET <stats url>/stats`. Env: UPSTREAM_DURATION_MS, UPSTREAM_QUEUE_MS.
import { createServer } from 'node:http';

import { startSandbox } from '../src/sandbox/simulator.js';

const sampleEveryMs = 50;

const sandbox = await startSandbox({
  durationMs: Number(process.env['UPSTREAM_DURATION_MS'] ?? 10_000),
  queueMs: Number(process.env['UPSTREAM_QUEUE_MS'] ?? 2_000),
  assetBaseUrl: 'http://127.0.0.1/sandbox/assets',
});

// The most requests seen in any window of at most one second, from counters sampled every 50 ms: a window that
// holds more than the budget is a real overrun (sampling can only miss a peak, never invent one).
const samples: Array<{ at: number; requests: number }> = [];
let maxInOneSecond = 0;
setInterval(() => {
  const now = Date.now();
  samples.push({ at: now, requests: sandbox.stats.requests });
  while (samples.length > 0 && (samples[0]?.at ?? now) < now - 1_000) samples.shift();
  const oldest = samples[0];
  if (oldest !== undefined) maxInOneSecond = Math.max(maxInOneSecond, sandbox.stats.requests - oldest.requests);
}, sampleEveryMs).unref();

const stats = createServer((request, response) => {
  if (request.url === '/reset-peak') maxInOneSecond = 0;
  const { requests, creates, queries, queriesById } = sandbox.stats;
  response.setHeader('content-type', 'application/json');
  response.end(JSON.stringify({ requests, creates, queries, queriesPerTask: [...queriesById.values()], maxInOneSecond }));
});
await new Promise<void>((resolve) => stats.listen(0, '127.0.0.1', resolve));
const address = stats.address();
const statsPort = typeof address === 'object' && address !== null ? address.port : 0;
process.stdout.write(`upstream listening on ${sandbox.url} stats on http://127.0.0.1:${statsPort}\n`);
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    stats.close();
    void sandbox.close().then(() => process.exit(0));
  });
}
