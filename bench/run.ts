// `npm run bench`: throughput and latency of the hot paths on this machine, against the built-in
// sandbox upstream over real sockets. Speed and memory goals live here, never in timed tests.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import autocannon from 'autocannon';

import { buildGateway } from '../src/app.js';
import { createClientRegistry } from '../src/auth/clients.js';
import { loadConfigOrThrow } from '../src/config.js';
import { startSandbox } from '../src/sandbox/simulator.js';

const key = 'vgk_bench_key_0123456789abcdefghijklmnopqrstuvwxyz';
const durationSeconds = Number(process.env['BENCH_SECONDS'] ?? 5);

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'gateway-bench-'));
  const sandbox = await startSandbox({ assetBaseUrl: 'http://127.0.0.1/sandbox/assets', durationMs: 200, queueMs: 50 });
  const config = loadConfigOrThrow({
    ELKAPI_API_KEY: 'bench',
    ELKAPI_BASE_URL: sandbox.url,
    DATABASE_URL: `sqlite:${join(dir, 'bench.db')}`,
    LOG_LEVEL: 'silent',
    UPSTREAM_MAX_RPS: '100000',
    POLL_INTERVAL_MIN_MS: '50ms',
    POLL_INTERVAL_MAX_MS: '200ms',
  });
  const clients = createClientRegistry({
    clients: [
      {
        id: 'bench',
        apiKeySha256: createHash('sha256').update(key).digest('hex'),
        webhookSecret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
        rateLimitPerMinute: 100_000_000,
        createLimitPerMinute: 100_000_000,
      },
    ],
  });
  const gateway = await buildGateway({ config, clients, logger: false });
  const base = await gateway.app.listen({ port: 0, host: '127.0.0.1' });
  gateway.startWorkers();
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };

  const created = await fetch(`${base}/videos`, { method: 'POST', headers, body: JSON.stringify({ prompt: 'A benchmark video' }) });
  const { id } = (await created.json()) as { id: string };
  for (let status = ''; status !== 'completed';) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    status = ((await (await fetch(`${base}/videos/${id}`, { headers })).json()) as { status: string }).status;
  }

  const scenarios: Array<{ name: string; options: autocannon.Options }> = [
    { name: 'GET /videos/{id} (completed, LRU cache)', options: { url: `${base}/videos/${id}`, headers } },
    {
      name: 'POST /videos (sandbox upstream create + insert)',
      options: { url: `${base}/videos`, method: 'POST', headers, body: JSON.stringify({ prompt: 'A benchmark video' }) },
    },
    { name: 'GET /healthz (framework floor)', options: { url: `${base}/healthz` } },
  ];
  const rows: string[] = ['| scenario | req/s (mean) | p50 ms | p99 ms | non-2xx |', '|---|---|---|---|---|'];
  for (const scenario of scenarios) {
    // The load generator runs in its own worker thread, so the gateway keeps the main thread to itself.
    const result = await autocannon({ connections: 50, duration: durationSeconds, workers: 1, ...scenario.options });
    rows.push(
      `| ${scenario.name} | ${Math.round(result.requests.average)} | ${result.latency.p50} | ${result.latency.p99} | ${result.non2xx} |`,
    );
  }
  const rss = Math.round(process.memoryUsage().rss / 1024 / 1024);
  process.stdout.write(`${rows.join('\n')}\n\nRSS after the run: ${rss} MiB; upstream calls: ${sandbox.stats.requests}\n`);

  await gateway.close();
  await sandbox.close();
  await rm(dir, { recursive: true, force: true });
}

await main();
