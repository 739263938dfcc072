// `npx tsx bench/replicas-figures.ts`: issue 8's figures for the closing note, with the built gateway (`npm run
// build` first) as real processes on the machine's Postgres (a schema of its own, dropped at the end) and one
// sandbox upstream in this process shared by every gateway:
//   1. cached GET /videos/{id}: a Postgres-backed replica vs a SQLite one (autocannon, same load, ratio)
//   2. creates per second: Postgres vs SQLite (the same POST load, ratio)
//   3. NOTIFY → waiter woken: a long-poll held on replica B answers after a DELETE through replica A (p50/p99)
//   4. claim of 10,000 due videos: one `claimDue` on the Postgres store (ms)
// Printed only; on a loaded machine read them as ratios with their conditions.
import { randomBytes } from 'node:crypto';

import autocannon from 'autocannon';
import pg from 'pg';

import { startSandbox } from '../src/sandbox/simulator.js';
import { authHeaders, createVideo, type GatewayProcess, jsonHeaders, readVideoUntil, startGateway } from './lib/gateway.js';
import { quantile } from './lib/stats.js';

const postgresBase = process.env['BENCH_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const upstreamKey = `bench-${randomBytes(6).toString('hex')}`;
const schema = `bench_${randomBytes(6).toString('hex')}`;
const schemaUrl = `${postgresBase}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
const seconds = Number(process.env['BENCH_SECONDS'] ?? '5');

const admin = new pg.Client({ connectionString: postgresBase });
await admin.connect();
await admin.query(`create schema ${schema}`);
const sandbox = await startSandbox({ apiKey: upstreamKey, durationMs: 1_000, queueMs: 200, assetBaseUrl: 'http://127.0.0.1:9/a' });
const upstreamEnv = {
  ELKAPI_API_KEY: upstreamKey,
  ELKAPI_BASE_URL: sandbox.url,
  UPSTREAM_MAX_RPS: '100000',
  POLL_INTERVAL_MIN_MS: '200ms',
};
const gateways: GatewayProcess[] = [];
const start = async (name: string, env: Record<string, string>): Promise<GatewayProcess> => {
  const gateway = await startGateway({ name, env: { ...upstreamEnv, ...env } });
  gateways.push(gateway);
  return gateway;
};

async function load(url: string, request: autocannon.Request): Promise<number> {
  const result = await autocannon({ url, connections: 16, duration: seconds, requests: [request] });
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`${url}: ${result.non2xx} non-2xx, ${result.errors} errors`);
  return result.requests.average;
}

try {
  const secret = randomBytes(32).toString('hex');
  const sqlite = await start('gateway (sqlite)', {});
  const a = await start('replica A (postgres)', { DATABASE_URL: schemaUrl, GATEWAY_SECRET: secret });
  const b = await start('replica B (postgres)', { DATABASE_URL: schemaUrl, GATEWAY_SECRET: secret });

  // 1. Cached GET of a finished video.
  const cachedRps: number[] = [];
  for (const gateway of [sqlite, a]) {
    const video = await createVideo(gateway.url);
    await readVideoUntil(gateway.url, video.id, (body) => body.status === 'completed');
    cachedRps.push(await load(`${gateway.url}/videos/${video.id}`, { method: 'GET', headers: authHeaders }));
  }
  const [sqliteGet = 0, postgresGet = 0] = cachedRps;
  console.log(
    `1. cached GET: sqlite ${sqliteGet.toFixed(0)} req/s, postgres ${postgresGet.toFixed(0)} req/s (postgres/sqlite ${(postgresGet / sqliteGet).toFixed(2)})`,
  );

  // 2. Creates per second.
  const createRps: number[] = [];
  for (const gateway of [sqlite, a]) {
    createRps.push(
      await load(`${gateway.url}/videos`, { method: 'POST', headers: jsonHeaders, body: JSON.stringify({ prompt: 'A benchmark video' }) }),
    );
  }
  const [sqliteCreate = 0, postgresCreate = 0] = createRps;
  console.log(
    `2. creates: sqlite ${sqliteCreate.toFixed(0)}/s, postgres ${postgresCreate.toFixed(0)}/s (postgres/sqlite ${(postgresCreate / sqliteCreate).toFixed(2)})`,
  );

  // 3. NOTIFY → waiter woken on another replica: long-poll on B, delete through A.
  sandbox.reset();
  const latencies: number[] = [];
  for (let n = 0; n < 100; n += 1) {
    const video = await createVideo(a.url, { prompt: `Waiter ${n}` });
    const held = fetch(`${b.url}/videos/${video.id}?wait=30`, { headers: authHeaders }).then(async (response) => {
      await response.arrayBuffer();
      return performance.now();
    });
    // The long-poll must be held before the change: B answers a GET immediately first (nothing changed yet).
    await new Promise((resolve) => setTimeout(resolve, 20));
    const deleted = await fetch(`${a.url}/videos/${video.id}`, { method: 'DELETE', headers: authHeaders });
    await deleted.arrayBuffer();
    const deletedAt = performance.now();
    latencies.push((await held) - deletedAt);
  }
  console.log(
    `3. NOTIFY → waiter on another replica: p50 ${quantile(latencies, 0.5).toFixed(1)} ms, p99 ${quantile(latencies, 0.99).toFixed(1)} ms (100 long-polls, DELETE through A)`,
  );
} finally {
  for (const gateway of gateways) await gateway.stop().catch(() => {});
  await sandbox.close();
}

// 4. Claim of 10,000 due videos, straight on the store (rows copied from one real video, ids and times changed).
const { openPostgresStore } = await import('../src/store/postgres.js');
const store = await openPostgresStore({ url: schemaUrl, poolSize: 2 });
try {
  await admin.query(`set search_path = ${schema}`);
  await admin.query(`
    insert into videos select (r).* from (
      select jsonb_populate_record(null::videos, to_jsonb(v) || jsonb_build_object('id', 'vid_claim_' || g, 'upstream_id', 'up_claim_' || g, 'status', 'processing', 'next_poll_at', 0,
                                                          'lease_until', null)) as r
      from (select * from videos where status = 'completed' limit 1) v, generate_series(1, 10000) g) s`);
  const started = performance.now();
  const claimed = await store.videos.claimDue(Date.now(), 10_000, 60_000);
  const elapsed = performance.now() - started;
  console.log(`4. claim of ${claimed.length} due videos: ${elapsed.toFixed(0)} ms`);
} finally {
  await store.close();
  await admin.query(`drop schema ${schema} cascade`);
  await admin.end();
}
