/*
 * Limits shared through Redis (issue 8 item 5): two gateways in one process stand for two replicas; they share
 * only the machine's Redis (a key prefix of this test's own), reached directly or through a TCP proxy the test cuts.
 */
import { Writable } from 'node:stream';

import t, { type Test } from 'tap';

import { createClientRegistry } from '../src/auth/clients.js';
import { silentLogger } from '../src/lib/logger.js';
import { openRedisLink, type RedisLink } from '../src/limits/redis-link.js';
import { createSharedUpstreamBudget, sharedWindow } from '../src/limits/shared-upstream-budget.js';
import { auth, startTestGateway, testClientsFile, type TestGateway } from './helpers/gateway.js';
import { parsePrometheus, sampleValue } from './helpers/prometheus.js';
import { redisHost, redisPort, redisTestSpace, redisUrl, requireRedis } from './helpers/redis.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';
import { until } from './helpers/until.js';

t.test('the shared upstream window never holds more than the cap', async (t) => {
  t.same(sharedWindow(20), { points: 20, durationSeconds: 1 });
  t.same(sharedWindow(2.5), { points: 2, durationSeconds: 1 }, 'a fractional cap rounds down');
  t.same(sharedWindow(0.5), { points: 1, durationSeconds: 2 }, 'below one per second the window widens');
  t.same(sharedWindow(0.3), { points: 1, durationSeconds: 4 });
});

const redisUp = await requireRedis(t);

/** Log lines of one gateway, parsed. */
function capturedLogs(): { stream: Writable; messages: () => string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { stream, messages: () => lines.map((line) => (JSON.parse(line) as { msg: string }).msg) };
}

async function metricOf(gw: TestGateway, name: string, labels?: Record<string, string>): Promise<number | undefined> {
  return sampleValue(parsePrometheus(await gw.metrics.render()), name, labels);
}

/** Alice may make `perMinute` requests a minute; Bob `creates` video creations (and plenty of requests). */
async function startReplica(
  t: Test,
  options: { url: string; prefix: string; perMinute: number; creates: number; logs?: Writable },
): Promise<TestGateway> {
  const clients = createClientRegistry({
    clients: testClientsFile.clients.map((client) =>
      client.id === 'alice' ? { ...client, rateLimitPerMinute: options.perMinute } : { ...client, createLimitPerMinute: options.creates },
    ),
  });
  return startTestGateway(t, {
    env: { REDIS_URL: options.url },
    gateway: {
      clients,
      redisKeyPrefix: options.prefix,
      ...(options.logs === undefined ? {} : { logger: { level: 'info', stream: options.logs } }),
    },
  });
}

/** Waits until each replica's first Redis connection is ready (a loaded machine may take longer than the start wait). */
async function untilShared(...gateways: TestGateway[]): Promise<void> {
  for (const gw of gateways) await until(async () => (await metricOf(gw, 'gateway_redis_fallback')) === 0, 'Redis ready');
}

const list = async (gw: TestGateway, who: 'alice' | 'bob' = 'alice'): Promise<number> =>
  (await gw.app.inject({ method: 'GET', url: '/videos', headers: auth(who) })).statusCode;

if (redisUp) {
  t.test('two replicas sharing one Redis hold a combined limit of N', async (t) => {
    const space = await redisTestSpace(t);
    const a = await startReplica(t, { url: redisUrl, prefix: space.prefix, perMinute: 4, creates: 2 });
    const b = await startReplica(t, { url: redisUrl, prefix: space.prefix, perMinute: 4, creates: 2 });
    await untilShared(a, b);

    t.same([await list(a), await list(b), await list(a), await list(b)], [200, 200, 200, 200], 'four requests, alternating');
    const refused = await b.app.inject({ method: 'GET', url: '/videos', headers: auth() });
    t.equal(refused.statusCode, 429, 'the fifth is refused, whichever replica it reaches');
    t.equal(refused.json<{ code: string }>().code, 'rate_limited');
    t.ok(Number(refused.headers['retry-after']) >= 1);
    t.equal(await list(a), 429);

    const create = (gw: TestGateway) =>
      gw.app.inject({ method: 'POST', url: '/videos', headers: auth('bob'), payload: { prompt: 'Shared create limit' } });
    t.same([(await create(a)).statusCode, (await create(b)).statusCode], [202, 202], 'two creations, one on each replica');
    const third = await create(a);
    t.equal(third.statusCode, 429, 'the third creation is refused');
    t.match(third.json<{ detail: string }>().detail, /video creations/);
    t.equal(await list(b, 'bob'), 200, 'other requests of that client still pass');

    t.ok((await space.keys()).length >= 3, 'the counts live in Redis under the test’s prefix');
    t.equal(await metricOf(a, 'gateway_redis_fallback'), 0);
    t.equal(await metricOf(b, 'gateway_redis_fallback'), 0);
  });

  t.test('Redis cut: requests succeed on local limits, the metric shows it; Redis back: shared again', async (t) => {
    const space = await redisTestSpace(t);
    const proxy = await startTcpProxy({ host: redisHost, port: redisPort });
    t.teardown(() => proxy.close());
    const viaProxy = `redis://127.0.0.1:${proxy.port}`;
    const logs = capturedLogs();
    const a = await startReplica(t, { url: viaProxy, prefix: space.prefix, perMinute: 3, creates: 30, logs: logs.stream });
    const b = await startReplica(t, { url: redisUrl, prefix: space.prefix, perMinute: 3, creates: 30 });
    await untilShared(a, b);
    t.same([await list(a), await list(b), await list(a)], [200, 200, 200]);
    t.equal(await list(b), 429, 'the shared limit is spent');

    const logsBefore = logs.messages().length;
    const logsSince = (start: string): number =>
      logs
        .messages()
        .slice(logsBefore)
        .filter((message) => message.startsWith(start)).length;
    proxy.cut();
    await until(async () => (await metricOf(a, 'gateway_redis_fallback')) === 1, 'A falls back to local limits');
    const during = [await list(a), await list(a), await list(a), await list(a)];
    t.same(during, [200, 200, 200, 429], 'A counts on its own: three pass, the fourth is refused (never a 5xx)');
    t.ok(((await metricOf(a, 'gateway_redis_fallback_decisions_total', { limit: 'client' })) ?? 0) >= 4, 'decisions counted');
    t.equal(await list(b), 429, 'B, still on Redis, keeps the shared count');
    // Reconnect attempts keep failing while cut: still one warning for the whole outage.
    const connectionsAtCut = proxy.connections;
    await until(() => proxy.refused > 1, 'A tried to reconnect, twice');
    t.equal(proxy.connections, connectionsAtCut, 'none got through');
    t.equal(logsSince('Redis does not answer'), 1, 'one warning per outage');

    proxy.restore();
    await until(async () => (await metricOf(a, 'gateway_redis_fallback')) === 0, 'A shares its limits again');
    t.equal(await list(a), 429, 'A sees the shared count again');
    t.equal(logsSince('Redis answers again'), 1);
  });

  t.test('Redis unreachable at start: the gateway starts on local limits and serves', async (t) => {
    const proxy: TcpProxy = await startTcpProxy({ host: redisHost, port: redisPort });
    t.teardown(() => proxy.close());
    proxy.cut();
    const space = await redisTestSpace(t);
    const gw = await startReplica(t, { url: `redis://127.0.0.1:${proxy.port}`, prefix: space.prefix, perMinute: 2, creates: 30 });
    t.equal(await metricOf(gw, 'gateway_redis_fallback'), 1);
    t.same([await list(gw), await list(gw), await list(gw)], [200, 200, 429], 'local limits hold');
    proxy.restore();
    await until(async () => (await metricOf(gw, 'gateway_redis_fallback')) === 0, 'shared once Redis answers');
    t.same([await list(gw), await list(gw), await list(gw)], [200, 200, 429], 'the shared count starts afresh in Redis');
  });

  t.test('the upstream budget: at most the cap per second across replicas; local insurance while Redis is cut', async (t) => {
    const space = await redisTestSpace(t);
    const proxy = await startTcpProxy({ host: redisHost, port: redisPort });
    t.teardown(() => proxy.close());
    const links: RedisLink[] = [];
    const link = async (url: string): Promise<RedisLink> => {
      const opened = await openRedisLink({ url, keyPrefix: space.prefix, logger: silentLogger });
      links.push(opened);
      return opened;
    };
    t.teardown(() => Promise.all(links.map((opened) => opened.close())));
    const noSleep = async (): Promise<void> => {};
    const direct = createSharedUpstreamBudget({ link: await link(redisUrl), ratePerSecond: 3, sleep: noSleep });
    const proxiedLink = await link(`redis://127.0.0.1:${proxy.port}`);
    const proxied = createSharedUpstreamBudget({ link: proxiedLink, ratePerSecond: 3, sleep: noSleep });

    const grants = [];
    for (const budget of [direct, proxied, direct, proxied]) grants.push((await budget.take(0)).granted);
    t.same(grants, [true, true, true, false], 'three calls in the window between both replicas, the fourth must wait');
    const refused = await direct.take(0);
    t.notOk(refused.granted);
    t.ok(refused.waitMs > 0 && refused.waitMs <= 1000, `told to wait ${refused.waitMs} ms, within the one-second window`);

    proxy.cut();
    await until(() => !proxiedLink.usable(), 'the proxied replica lost Redis');
    const local = [];
    for (let call = 0; call < 4; call += 1) local.push((await proxied.take(0)).granted);
    t.same(local, [true, true, true, false], 'cut off, the replica holds the cap alone (insurance limiter), never more');
    t.notOk((await direct.take(0)).granted, 'the other replica still counts in Redis');
  });
}
