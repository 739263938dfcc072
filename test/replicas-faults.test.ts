/*
 * Replicas under faults (issue 8): two gateway child processes reach Postgres and Redis through TCP proxies this
 * test cuts; the machine's services are never stopped. Every gateway connection is also killed server-side with
 * `pg_terminate_backend`. Nothing may be lost: every video ends, every subscribed event arrives, LISTEN recovers
 * (a long-poll on B wakes after a completion polled by A), requests during the database cut answer 503
 * `store_unavailable`, and with Redis cut requests keep succeeding on local limits.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { Webhook } from 'standardwebhooks';
import t from 'tap';
import { request } from 'undici';

import type { WebhookEvent } from '../schemas/deliveries.js';
import type { Video } from '../schemas/video.js';
import { startSandbox } from '../src/sandbox/simulator.js';
import { startChildGateway } from './helpers/child-gateway.js';
import { clientKeys, testClientsFile, webhookSecrets } from './helpers/gateway.js';
import { freshSchema, POSTGRES_HOST, POSTGRES_PORT, postgresOrSkip } from './helpers/postgres.js';
import { redisHost, redisPort, redisTestSpace, requireRedis } from './helpers/redis.js';
import { flatHeaders, sendText, startScriptedServer } from './helpers/scripted-server.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';
import { until } from './helpers/until.js';

t.setTimeout(180_000);

const upstreamKey = 'elk-replica-faults-key';
const CUT_MS = 5_000;

const server = await postgresOrSkip(t);
const redisUp = server === null ? false : await requireRedis(t);

if (server !== null && redisUp) {
  t.test('database cut and connections killed, Redis cut: nothing lost, 503 meanwhile, LISTEN recovers', async (t) => {
    const dir = t.testdir();
    const { schema, pool: admin } = await freshSchema(t, server);
    const redis = await redisTestSpace(t);
    const pgProxy = await startTcpProxy({ host: POSTGRES_HOST, port: POSTGRES_PORT });
    t.teardown(() => pgProxy.close());
    const redisProxy = await startTcpProxy({ host: redisHost, port: redisPort });
    t.teardown(() => redisProxy.close());
    const sandbox = await startSandbox({ apiKey: upstreamKey, durationMs: 1_500, queueMs: 300, assetBaseUrl: 'http://127.0.0.1:9/a' });
    t.teardown(() => sandbox.close());
    const receiver = await startScriptedServer();
    t.teardown(() => receiver.close());
    receiver.respond((_request, response) => sendText(response, 204, ''));

    const applicationName = `gw_${schema}`;
    const databaseUrl = new URL(server.url(schema));
    databaseUrl.port = String(pgProxy.port);
    databaseUrl.searchParams.set('application_name', applicationName);
    const clientsFile = join(dir, 'clients.json');
    writeFileSync(
      clientsFile,
      JSON.stringify({
        clients: testClientsFile.clients.map((client) => ({ ...client, rateLimitPerMinute: 100_000, createLimitPerMinute: 100_000 })),
      }),
    );
    const env: Record<string, string> = {
      DATABASE_URL: databaseUrl.toString(),
      DATABASE_POOL_SIZE: '4',
      REDIS_URL: `redis://127.0.0.1:${redisProxy.port}`,
      REDIS_KEY_PREFIX: redis.prefix,
      GATEWAY_SECRET: 'replica-faults-secret-0123456789abcdefghij',
      CLIENTS_FILE: clientsFile,
      ELKAPI_API_KEY: upstreamKey,
      ELKAPI_BASE_URL: sandbox.url,
      LOG_LEVEL: 'warn',
      UPSTREAM_MAX_RPS: '1000',
      POLL_INTERVAL_MIN_MS: '300ms',
      POLL_INTERVAL_MAX_MS: '600ms',
      POLL_LEASE_MS: '2s',
      WEBHOOK_TIMEOUT_MS: '1s',
      WEBHOOK_RETRY_SCHEDULE: '100ms,200ms,500ms,1s,1s,1s,1s,1s,1s,1s',
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    };
    const a = await startChildGateway(t, env);
    const b = await startChildGateway(t, env);
    const alice = { authorization: `Bearer ${clientKeys.alice}` };
    const post = async (url: string, body: Record<string, unknown>): Promise<{ status: number; json: Record<string, unknown> }> => {
      const response = await request(`${url}/videos`, {
        method: 'POST',
        headers: { ...alice, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: response.statusCode, json: (await response.body.json()) as Record<string, unknown> };
    };
    const ids: string[] = [];
    const createSome = async (count: number): Promise<void> => {
      for (let n = 0; n < count; n += 1) {
        const created = await post(n % 2 === 0 ? a.url : b.url, {
          prompt: `Fault run ${ids.length}`,
          callbackUrl: `${receiver.url}/hooks`,
          webhookEvents: ['video.completed', 'video.failed'],
        });
        t.equal(created.status, 202, JSON.stringify(created.json));
        ids.push(String((created.json as unknown as Video).id));
      }
    };

    await createSome(10);
    // Mid-run, every connection of both gateways killed server-side (a failover, an operator).
    const killed = await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1', [
      applicationName,
    ]);
    t.ok((killed.rowCount ?? 0) >= 2, `the gateways' connections were killed (${killed.rowCount})`);
    await createSome(10);

    // The database unreachable for 5 s: whatever needs it answers 503 store_unavailable, the processes stay up.
    pgProxy.cut();
    const cutAt = Date.now();
    const during: number[] = [];
    const codes = new Set<string>();
    while (Date.now() - cutAt < CUT_MS) {
      for (const url of [a.url, b.url]) {
        const response = await request(`${url}/videos`, { headers: alice });
        const body = (await response.body.json()) as { code?: string };
        during.push(response.statusCode);
        codes.add(body.code ?? '');
        t.notOk(response.statusCode >= 500 && response.statusCode !== 503, 'never another 5xx');
      }
      const created = await post(a.url, { prompt: 'during the cut' });
      during.push(created.status);
      codes.add(typeof created.json['code'] === 'string' ? created.json['code'] : '');
    }
    t.ok(
      during.every((status) => status === 503),
      `every request during the cut answered 503 (${during.length} requests)`,
    );
    t.same([...codes], ['store_unavailable']);
    pgProxy.restore();
    t.equal(a.process.exitCode, null, 'A is still running');
    t.equal(b.process.exitCode, null, 'B is still running');
    await createSome(10);

    await until(
      async () => {
        const videos = await admin.query<{ n: string }>("select count(*) as n from videos where status not in ('completed', 'failed')");
        const pending = await admin.query<{ n: string }>("select count(*) as n from webhook_deliveries where status != 'delivered'");
        return Number(videos.rows[0]?.n) === 0 && Number(pending.rows[0]?.n) === 0;
      },
      'every video terminal and every event delivered after the faults',
      60_000,
      100,
    );
    const { rows } = await admin.query<{ id: string }>('select id from videos');
    t.same(rows.map((row) => row.id).sort(), [...ids].sort(), 'no video lost, none invented (the refused creates left nothing)');
    t.equal(sandbox.stats.creates, ids.length, 'one upstream create per video');
    const verifier = new Webhook(webhookSecrets.alice);
    const delivered = new Set(
      receiver.requests.map((hook) => (verifier.verify(hook.body, flatHeaders(hook.headers)) as WebhookEvent).data.id),
    );
    t.same([...delivered].sort(), [...ids].sort(), 'every video its terminal event, verified');

    // LISTEN recovered on B: a long-poll held there wakes on a completion only A's poller can have seen… or B's
    // own; either way the answer must come without waiting out the long-poll.
    const watched = await post(a.url, { prompt: 'after recovery' });
    const watchedId = String(watched.json['id']);
    const longPoll = request(`${b.url}/videos/${watchedId}?wait=30`, { headers: alice });
    const started = Date.now();
    const woken = await longPoll;
    const woke = (await woken.body.json()) as Video;
    t.equal(woken.statusCode, 200);
    t.not(woke.status, 'queued', 'B answered on a change, not at the end of the wait');
    t.ok(Date.now() - started < 25_000, 'well before the 30 s wait ran out');

    // Redis unreachable: limits turn local, requests keep succeeding.
    redisProxy.cut();
    for (let n = 0; n < 10; n += 1) {
      const response = await request(`${(n % 2 === 0 ? a : b).url}/videos?limit=1`, { headers: alice });
      await response.body.dump();
      t.equal(response.statusCode, 200, `request ${n} with Redis cut`);
    }
    redisProxy.restore();
  });
}
