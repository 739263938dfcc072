/**
 * Fair webhook capacity across tenants (issue 13 item 1): one client pointing its callbacks at 8 ports that never
 * answer must not hold up another client's webhooks. Real receivers on 127.0.0.1, the gateway's own dispatcher
 * (global pool 32, 4 per receiver), a 10 s attempt timeout so a dead receiver holds its slots for a long time.
 */
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';

import t, { type Test } from 'tap';

import { createClientRegistry } from '../src/auth/clients.js';
import { openPostgresStore } from '../src/store/postgres.js';
import type { Store } from '../src/store/repositories.js';
import { createDispatcher, receiverCooldownMs } from '../src/webhooks/dispatcher.js';
import { createGuardedAgent } from '../src/webhooks/ssrf.js';
import { advanceAndPoll, createVideo, startTestGateway, testClientsFile, type TestGateway } from './helpers/gateway.js';
import { ManualClock } from './helpers/manual-time.js';
import { freshSchema, postgresOrSkip } from './helpers/postgres.js';
import { type ScriptedServer, sendText, startScriptedServer } from './helpers/scripted-server.js';
import { until } from './helpers/until.js';

const DEAD_PORTS = 8;
const EVENTS_PER_DEAD_PORT = 5;
const TIMEOUT_MS = 10_000;

async function receiver(t: Test, hold: boolean): Promise<ScriptedServer> {
  const server = await startScriptedServer();
  const held: ServerResponse[] = [];
  server.respond((_request, response) => (hold ? void held.push(response) : sendText(response, 204, '')));
  t.teardown(() => {
    held.forEach((response) => response.destroy());
    return server.close();
  });
  return server;
}

async function fairnessGateway(t: Test, store?: Store): Promise<TestGateway> {
  return startTestGateway(t, {
    ...(store === undefined ? {} : { gateway: { store } }),
    clock: new ManualClock(Math.floor(Date.now() / 1000) * 1000),
    env: {
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
      WEBHOOK_RETRY_SCHEDULE: '5s,5m,30m',
      WEBHOOK_TIMEOUT_MS: `${TIMEOUT_MS}ms`,
    },
  });
}

async function healthyClientNotDelayed(t: Test, store?: Store): Promise<void> {
  const dead = await Promise.all(Array.from({ length: DEAD_PORTS }, () => receiver(t, true)));
  const healthy = await receiver(t, false);
  const gw = await fairnessGateway(t, store);
  // Alice's events are all older than Bob's, so "oldest due first" alone would give her every slot.
  let created = 0;
  for (const server of dead) {
    for (let i = 0; i < EVENTS_PER_DEAD_PORT; i++) {
      await createVideo(gw, { prompt: 'A tiger', callbackUrl: `${server.url}/hooks/${i}` }, 'alice');
      // Past the create rate limit's window (30 a minute) now and then.
      gw.clock.advance(++created % 20 === 0 ? 61_000 : 10);
    }
  }
  await createVideo(gw, { prompt: 'A tiger', callbackUrl: `${healthy.url}/hooks` }, 'bob');
  await advanceAndPoll(gw, 11_000, 100);

  const started = performance.now();
  gw.dispatcher.start();
  t.teardown(() => gw.dispatcher.stop(0));
  await until(() => healthy.requests.length === 1, 'bob’s webhook to arrive', TIMEOUT_MS + 5_000);
  const latencyMs = performance.now() - started;
  const deadAttempts = dead.reduce((sum, server) => sum + server.requests.length, 0);
  t.comment(`bob's webhook arrived after ${Math.round(latencyMs)} ms; ${deadAttempts} attempts held by alice's receivers`);
  t.ok(latencyMs < 2_000, `bob's webhook arrives promptly (${Math.round(latencyMs)} ms), not after alice's ${TIMEOUT_MS} ms timeouts`);
  t.ok(deadAttempts <= 8, `alice holds at most her share of the pool toward one host (${deadAttempts} attempts)`);
  t.ok(deadAttempts >= 1, 'alice’s receivers were tried');
}

t.test('SQLite: a client whose 8 receivers never answer does not delay another client’s webhook', (t) => healthyClientNotDelayed(t));

t.test('Postgres: a client whose 8 receivers never answer does not delay another client’s webhook', async (t) => {
  const server = await postgresOrSkip(t);
  if (server === null) return;
  const { url } = await freshSchema(t, server);
  await healthyClientNotDelayed(t, await openPostgresStore({ url, poolSize: 4 }));
});

t.test('a receiver that keeps timing out has its attempts spaced: timeout × 2^(n-1)', async (t) => {
  const dead = await receiver(t, true);
  const gw = await fairnessGateway(t);
  for (let i = 0; i < 4; i++) {
    await createVideo(gw, { prompt: 'A tiger', callbackUrl: `${dead.url}/hooks/${i}` }, 'alice');
    gw.clock.advance(10);
  }
  await advanceAndPoll(gw, 11_000, 100);
  const agent = createGuardedAgent({ allowPrivate: true, timeoutMs: 300 });
  t.teardown(() => agent.close());
  const dispatcher = createDispatcher({
    deliveries: gw.store.deliveries,
    videos: gw.store.videos,
    bus: gw.bus,
    clock: gw.clock,
    random: () => 0.5,
    clients: createClientRegistry(testClientsFile),
    agent,
    logger: { error() {}, warn() {}, info() {}, debug() {} },
    retryScheduleMs: [60_000],
    timeoutMs: 300,
    concurrency: 4,
    perHostConcurrency: 1,
  });
  t.equal(await dispatcher.tick(), 1, 'first attempt');
  t.equal(await dispatcher.tick(), 0, 'it timed out: the receiver cools down, its next event waits');
  gw.clock.advance(300);
  t.equal(await dispatcher.tick(), 1, 'after one timeout’s length, one more attempt');
  gw.clock.advance(300);
  t.equal(await dispatcher.tick(), 0, 'second timeout in a row: the wait doubles');
  gw.clock.advance(300);
  t.equal(await dispatcher.tick(), 1, 'after 600 ms, the next attempt');
  t.equal(dead.requests.length, 3, 'three attempts in all, not one per tick');
  t.same([receiverCooldownMs(300, 1), receiverCooldownMs(300, 3), receiverCooldownMs(15_000, 30)], [300, 1200, 300_000]);
});
