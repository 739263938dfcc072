import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { Webhook } from 'standardwebhooks';
import t, { type Test } from 'tap';

import type { DeliveryAttempt, DeliveryList, WebhookEvent } from '../schemas/deliveries.js';
import { createClientRegistry } from '../src/auth/clients.js';
import type { VideoRecord } from '../src/store/records.js';
import type { Store } from '../src/store/repositories.js';
import { openSqliteStore } from '../src/store/sqlite.js';
import { createDispatcher } from '../src/webhooks/dispatcher.js';
import { createGuardedAgent } from '../src/webhooks/ssrf.js';
import {
  advanceAndPoll,
  auth,
  createVideo,
  readVideo,
  startTestGateway,
  testClientsFile,
  type TestGateway,
  upstreamIdOf,
  webhookSecrets,
} from './helpers/gateway.js';
import { ManualClock } from './helpers/manual-time.js';
import { videoRequest } from './helpers/records.js';
import {
  flatHeaders,
  inSequence,
  type RecordedRequest,
  type ScriptedHandler,
  type ScriptedServer,
  sendText,
  startScriptedServer,
} from './helpers/scripted-server.js';
import { until } from './helpers/until.js';

type Json = Record<string, unknown>;
/** Local receivers over http on 127.0.0.1, a short schedule, and a clock near real time (signatures carry it). */
async function webhookGateway(
  t: Test,
  env: Record<string, string> = {},
  extra: Parameters<typeof startTestGateway>[1] = {},
): Promise<TestGateway> {
  return startTestGateway(t, {
    clock: new ManualClock(Math.floor(Date.now() / 1000) * 1000),
    env: { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true', WEBHOOK_RETRY_SCHEDULE: '5s,5m,30m', ...env },
    ...extra,
  });
}

async function receiver(t: Test, answer?: ScriptedHandler): Promise<ScriptedServer> {
  const server = await startScriptedServer();
  server.respond(answer ?? ((_request, response) => sendText(response, 204, '')));
  t.teardown(() => server.close());
  return server;
}

/** The body of a received webhook, after checking its signature the way a partner would. */
function verified(request: RecordedRequest, secret: string = webhookSecrets.alice): WebhookEvent {
  return new Webhook(secret).verify(request.body, flatHeaders(request.headers)) as WebhookEvent;
}

async function deliveryLog(gw: TestGateway, id: string): Promise<DeliveryAttempt[]> {
  const response = await gw.app.inject({ method: 'GET', url: `/videos/${id}/deliveries`, headers: auth() });
  if (response.statusCode !== 200) throw new Error(`deliveries: ${response.statusCode} ${response.body}`);
  return response.json<DeliveryList>().data;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** The guarded agent as the gateway builds it (private addresses allowed for local receivers), closed at teardown. */
function testAgent(t: Test, timeoutMs: number) {
  const agent = createGuardedAgent({ allowPrivate: true, timeoutMs });
  t.teardown(() => agent.close());
  return agent;
}

/** A receiver that holds every request until `release()`, then answers 204 (and answers later ones at once). */
async function holdingReceiver(t: Test): Promise<ScriptedServer & { release(): void }> {
  const held: ServerResponse[] = [];
  const server = await receiver(t, (_request, response) => void held.push(response));
  t.teardown(() => held.forEach((response) => response.destroy()));
  return Object.assign(server, {
    release() {
      server.respond((_request, response) => sendText(response, 204, ''));
      for (const response of held.splice(0)) sendText(response, 204, '');
    },
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Request-time validation
// ---------------------------------------------------------------------------------------------------------------

t.test('POST /videos refuses unsafe callback URLs with 400 naming the field, and stores the normalised URL', async (t) => {
  const gw = await startTestGateway(t);
  const post = (payload: Json, who: 'alice' | 'bob' = 'alice') =>
    gw.app.inject({ method: 'POST', url: '/videos', headers: auth(who), payload });
  for (const callbackUrl of [
    'http://hooks.example.com/x',
    'https://127.0.0.1/x',
    'https://[::ffff:10.0.0.1]/x',
    'https://localhost/x',
    'https://a:b@hooks.example.com/x',
    'hooks.example.com',
  ]) {
    const response = await post({ prompt: 'A tiger', callbackUrl });
    t.equal(response.statusCode, 400, callbackUrl);
    t.equal(response.json().code, 'validation_failed');
    t.equal(response.json().errors[0].path, '/body/callbackUrl');
  }
  const tooLong = await post({ prompt: 'A tiger', callbackUrl: `https://hooks.example.com/${'a'.repeat(2100)}` });
  t.equal(tooLong.json().errors[0].path, '/body/callbackUrl', 'over 2048 characters');
  t.equal(gw.sandbox.stats.creates, 0, 'refused requests never reach the upstream');

  const created = await createVideo(gw, { prompt: 'A tiger', callbackUrl: 'https://Hooks.Example.COM:443/v1/videos?ref=a#frag' });
  t.equal((await readVideo(gw, created.id)).callbackUrl, 'https://hooks.example.com/v1/videos?ref=a#frag', 'normalised');
  t.equal((await readVideo(gw, created.id)).webhook, null, 'no event yet, no summary');
});

t.test('allowedCallbackHosts restricts a client’s callbacks; the two switches open local receivers', async (t) => {
  const clients = createClientRegistry({
    clients: testClientsFile.clients.map((client) =>
      client.id === 'bob' ? { ...client, allowedCallbackHosts: ['hooks.bob.example', 'eu.bob.example'] } : client,
    ),
  });
  const gw = await startTestGateway(t, { gateway: { clients } });
  const post = (callbackUrl: string) =>
    gw.app.inject({ method: 'POST', url: '/videos', headers: auth('bob'), payload: { prompt: 'A tiger', callbackUrl } });
  t.equal((await post('https://hooks.bob.example/x')).statusCode, 202);
  t.equal((await post('https://eu.bob.example/x')).statusCode, 202);
  const refused = await post('https://hooks.example.com/x');
  t.equal(refused.statusCode, 400);
  t.same(refused.json().errors, [{ path: '/body/callbackUrl', message: "host is not in this client's allowedCallbackHosts" }]);

  const local = await webhookGateway(t);
  const ok = await local.app.inject({
    method: 'POST',
    url: '/videos',
    headers: auth(),
    payload: { prompt: 'A tiger', callbackUrl: 'http://127.0.0.1:9/hook' },
  });
  t.equal(ok.statusCode, 202, 'WEBHOOK_ALLOW_HTTP + WEBHOOK_ALLOW_PRIVATE_NETWORKS accept a local http receiver');
});

// ---------------------------------------------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------------------------------------------

t.test('a completed video POSTs one signed video.completed to its callback; the video and the log show it', async (t) => {
  const lines: string[] = [];
  const logStream = new Writable({ write: (chunk: Buffer, _encoding, done) => (lines.push(chunk.toString()), done()) });
  const gw = await webhookGateway(t, {}, { gateway: { logger: { level: 'info', stream: logStream } } });
  const hooks = await receiver(t);
  const created = await createVideo(gw, {
    prompt: 'A tiger',
    callbackUrl: `${hooks.url}/hooks?token=s3cr3t-query`,
    metadata: { userId: 'u_42' },
  });
  await advanceAndPoll(gw, 11_000);
  const before = await readVideo(gw, created.id);
  t.equal(before.status, 'completed');
  t.same(before.webhook, {
    status: 'pending',
    attempts: 0,
    lastAttemptAt: null,
    nextAttemptAt: iso(gw.clock.now() - 1000),
    lastResponseStatus: null,
  });
  t.equal(hooks.requests.length, 0, 'nothing is sent before the dispatcher runs');

  t.equal(await gw.dispatcher.tick(), 1);
  t.equal(hooks.requests.length, 1);
  const [request] = hooks.requests;
  if (request === undefined) return;
  t.equal(request.method, 'POST');
  t.equal(request.url, '/hooks?token=s3cr3t-query', 'path and query as given');
  t.equal(request.headers['content-type'], 'application/json');
  t.match(request.headers['webhook-id'], /^msg_[0-9A-Z]{26}$/);
  t.equal(request.headers['webhook-timestamp'], String(Math.floor(gw.clock.now() / 1000)));
  const event = verified(request);
  t.equal(event.type, 'video.completed');
  t.equal(event.timestamp, iso(gw.clock.now() - 1000), 'when the video completed');
  t.equal(event.data.webhook, null);
  const { webhook: _ignored, ...publicVideo } = before;
  t.same({ ...event.data, webhook: undefined }, { ...publicVideo, webhook: undefined }, 'data is the public Video');
  const upstreamId = await upstreamIdOf(gw, created.id);
  t.notMatch(request.body, upstreamId, 'never the upstream id');
  t.notMatch(request.body, webhookSecrets.alice.slice(6), 'never the secret');

  const after = await readVideo(gw, created.id);
  t.same(
    after.webhook,
    { status: 'delivered', attempts: 1, lastAttemptAt: iso(gw.clock.now()), nextAttemptAt: null, lastResponseStatus: 204 },
    'the cached body was replaced',
  );
  const log = await deliveryLog(gw, created.id);
  t.equal(log.length, 1);
  t.match(log[0], {
    messageId: request.headers['webhook-id'],
    eventType: 'video.completed',
    attempt: 1,
    at: iso(gw.clock.now()),
    responseStatus: 204,
    error: null,
  });
  t.type(log[0]?.durationMs, 'number');

  t.equal(await gw.dispatcher.tick(), 0, 'delivered means done');
  gw.clock.advance(3_600_000);
  t.equal(await gw.dispatcher.tick(), 0);
  t.equal(hooks.requests.length, 1);

  const logged = lines.join('');
  t.match(logged, /webhook delivered/);
  t.notMatch(logged, webhookSecrets.alice.slice(6), 'no secret in the logs');
  t.notMatch(logged, /s3cr3t-query/, 'the callback query (partners put tokens there) is not logged');
});

t.test('a change committed while a read is in flight never leaves the older body in the cache', async (t) => {
  const store = await openSqliteStore({ path: join(t.testdir(), 'race.db') });
  /** Runs once, between the read's database answer and its caching (a delivery recorded meanwhile). */
  let duringNextRead: (() => Promise<unknown>) | null = null;
  const racingStore: Store = {
    ...store,
    videos: {
      ...store.videos,
      async get(id) {
        const record = await store.videos.get(id);
        const interleave = duringNextRead;
        duringNextRead = null;
        if (interleave !== null) await interleave();
        return record;
      },
    },
  };
  const gw = await webhookGateway(t, {}, { gateway: { store: racingStore } });
  const hooks = await receiver(t);
  const created = await createVideo(gw, { prompt: 'A tiger', callbackUrl: `${hooks.url}/h` });
  await advanceAndPoll(gw, 11_000);

  duringNextRead = () => gw.dispatcher.tick();
  const racing = await readVideo(gw, created.id);
  t.equal(racing.webhook?.status, 'pending', 'the read answers what it read');
  t.equal(hooks.requests.length, 1, 'the webhook was delivered meanwhile');
  const after = await readVideo(gw, created.id);
  t.equal(after.webhook?.status, 'delivered', 'the next read sees the delivery, not a stale cached body');
});

t.test('video.processing is sent once when subscribed, then the terminal event; video.failed for failures', async (t) => {
  const gw = await webhookGateway(t);
  const hooks = await receiver(t);
  const created = await createVideo(gw, {
    prompt: 'A tiger',
    callbackUrl: `${hooks.url}/h`,
    webhookEvents: ['video.processing', 'video.completed'],
  });
  await advanceAndPoll(gw, 3_000);
  t.equal((await readVideo(gw, created.id)).status, 'processing');
  await gw.dispatcher.tick();
  await advanceAndPoll(gw, 5_000); // several polls while processing
  await gw.dispatcher.tick();
  await advanceAndPoll(gw, 5_000);
  await gw.dispatcher.tick();
  const events = hooks.requests.map((request) => verified(request));
  t.same(
    events.map((event) => event.type),
    ['video.processing', 'video.completed'],
  );
  t.equal(events[0]?.data.status, 'processing');
  t.equal(events[1]?.data.status, 'completed');
  t.not(hooks.requests[0]?.headers['webhook-id'], hooks.requests[1]?.headers['webhook-id'], 'one id per event');

  const quiet = await createVideo(gw, { prompt: 'A fox', callbackUrl: `${hooks.url}/h` });
  const failing = await createVideo(gw, { prompt: 'A fox [fail]', callbackUrl: `${hooks.url}/h`, webhookEvents: ['video.failed'] });
  await advanceAndPoll(gw, 11_000);
  await gw.dispatcher.tick();
  const later = hooks.requests.slice(2).map((request) => verified(request));
  t.same(
    later.map((event) => [event.type, event.data.id]).sort(),
    [
      ['video.completed', quiet.id],
      ['video.failed', failing.id],
    ],
    'default events: no processing; a failure sends video.failed',
  );
});

t.test('a failed attempt is retried on the schedule with the same id and the same bytes, signed anew', async (t) => {
  const gw = await webhookGateway(t);
  const hooks = await receiver(
    t,
    inSequence(
      (_request, response) => sendText(response, 500, 'boom'),
      (_request, response) => sendText(response, 200, 'ok'),
    ),
  );
  const created = await createVideo(gw, { prompt: 'A tiger', callbackUrl: `${hooks.url}/h` });
  await advanceAndPoll(gw, 11_000);
  await gw.dispatcher.tick();
  const firstAt = gw.clock.now();
  t.same((await readVideo(gw, created.id)).webhook, {
    status: 'retrying',
    attempts: 1,
    lastAttemptAt: iso(firstAt),
    nextAttemptAt: iso(firstAt + 5_000),
    lastResponseStatus: 500,
  });

  gw.clock.advance(4_999);
  t.equal(await gw.dispatcher.tick(), 0, 'not due yet');
  gw.clock.advance(1);
  t.equal(await gw.dispatcher.tick(), 1);
  const [first, second] = hooks.requests;
  t.equal(second?.headers['webhook-id'], first?.headers['webhook-id'], 'same webhook-id');
  t.equal(second?.body, first?.body, 'byte-identical body');
  t.not(second?.headers['webhook-timestamp'], first?.headers['webhook-timestamp'], 'timestamp per attempt');
  if (first !== undefined && second !== undefined) {
    verified(first);
    verified(second);
  }
  t.match((await readVideo(gw, created.id)).webhook, { status: 'delivered', attempts: 2, lastResponseStatus: 200 });
  t.same(
    (await deliveryLog(gw, created.id)).map((entry) => [entry.attempt, entry.responseStatus, entry.error]),
    [
      [2, 200, null],
      [1, 500, null],
    ],
    'newest first',
  );
});

t.test('after the last step of the schedule the delivery is failed and never tried again', async (t) => {
  const gw = await webhookGateway(t, { WEBHOOK_RETRY_SCHEDULE: '1s,2s' });
  const hooks = await receiver(t, (_request, response) => sendText(response, 503, 'down'));
  const created = await createVideo(gw, { prompt: 'A tiger', callbackUrl: `${hooks.url}/h` });
  await advanceAndPoll(gw, 11_000);
  await gw.dispatcher.tick();
  gw.clock.advance(1_000);
  await gw.dispatcher.tick();
  gw.clock.advance(2_000);
  await gw.dispatcher.tick();
  t.equal(hooks.requests.length, 3, 'the first attempt and two retries');
  t.same((await readVideo(gw, created.id)).webhook, {
    status: 'failed',
    attempts: 3,
    lastAttemptAt: iso(gw.clock.now()),
    nextAttemptAt: null,
    lastResponseStatus: 503,
  });
  gw.clock.advance(86_400_000);
  t.equal(await gw.dispatcher.tick(), 0);
  t.equal(hooks.requests.length, 3);
});

t.test('410 Gone stops retries for the event', async (t) => {
  const gw = await webhookGateway(t);
  const hooks = await receiver(t, (_request, response) => sendText(response, 410, 'unsubscribed'));
  const created = await createVideo(gw, { prompt: 'A tiger', callbackUrl: `${hooks.url}/h` });
  await advanceAndPoll(gw, 11_000);
  await gw.dispatcher.tick();
  gw.clock.advance(3_600_000);
  await gw.dispatcher.tick();
  t.equal(hooks.requests.length, 1);
  t.match((await readVideo(gw, created.id)).webhook, { status: 'failed', attempts: 1, nextAttemptAt: null, lastResponseStatus: 410 });
  t.match((await deliveryLog(gw, created.id))[0], { responseStatus: 410, error: /410 Gone/ });
});

t.test('a 3xx is a failed attempt: the redirect is not followed', async (t) => {
  const gw = await webhookGateway(t);
  const elsewhere = await receiver(t);
  const hooks = await receiver(t, (_request, response) => sendText(response, 301, '', { location: `${elsewhere.url}/moved` }));
  const created = await createVideo(gw, { prompt: 'A tiger', callbackUrl: `${hooks.url}/h` });
  await advanceAndPoll(gw, 11_000);
  await gw.dispatcher.tick();
  t.equal(elsewhere.requests.length, 0, 'never followed');
  t.match((await readVideo(gw, created.id)).webhook, { status: 'retrying', lastResponseStatus: 301 });
  t.match((await deliveryLog(gw, created.id))[0], { responseStatus: 301, error: `redirects are not followed (to ${elsewhere.url}/moved)` });
});

t.test('Retry-After on 429 and 503 is honoured when later than the schedule', async (t) => {
  const gw = await webhookGateway(t);
  const hooks = await receiver(
    t,
    inSequence(
      (_request, response) => sendText(response, 429, 'slow down', { 'retry-after': '120' }),
      (_request, response) => sendText(response, 503, 'maintenance', { 'retry-after': new Date(gw.clock.now() + 3_600_000).toUTCString() }),
      (_request, response) => sendText(response, 204, ''),
    ),
  );
  const created = await createVideo(gw, { prompt: 'A tiger', callbackUrl: `${hooks.url}/h` });
  await advanceAndPoll(gw, 11_000);
  await gw.dispatcher.tick();
  const firstAt = gw.clock.now();
  t.equal((await readVideo(gw, created.id)).webhook?.nextAttemptAt, iso(firstAt + 120_000), '120 s, not the 5 s step');
  gw.clock.advance(60_000);
  t.equal(await gw.dispatcher.tick(), 0);
  gw.clock.advance(60_000);
  t.equal(await gw.dispatcher.tick(), 1);
  t.equal(
    (await readVideo(gw, created.id)).webhook?.nextAttemptAt,
    iso(gw.clock.now() + 3_600_000),
    'an HTTP-date an hour ahead, not the 5 min step',
  );
});

t.test('a receiver that does not answer within WEBHOOK_TIMEOUT_MS fails the attempt; a slow one in time succeeds', async (t) => {
  const gw = await webhookGateway(t, { WEBHOOK_TIMEOUT_MS: '300ms' });
  const held: ServerResponse[] = [];
  t.teardown(() => held.forEach((response) => response.destroy()));
  const hooks = await receiver(
    t,
    inSequence(
      (_request, response) => void held.push(response),
      (_request, response) => void setTimeout(() => sendText(response, 204, ''), 100),
    ),
  );
  const created = await createVideo(gw, { prompt: 'A tiger', callbackUrl: `${hooks.url}/h` });
  await advanceAndPoll(gw, 11_000);
  await gw.dispatcher.tick();
  const [timedOut] = await deliveryLog(gw, created.id);
  t.match(timedOut, { attempt: 1, responseStatus: null, error: 'no answer within 300 ms' });
  t.ok((timedOut?.durationMs ?? 0) >= 250, 'the attempt lasted about the timeout');
  t.match((await readVideo(gw, created.id)).webhook, { status: 'retrying', lastResponseStatus: null });
  gw.clock.advance(6_000);
  await gw.dispatcher.tick();
  t.match((await deliveryLog(gw, created.id))[0], { attempt: 2, responseStatus: 204, error: null });
  t.equal(hooks.requests.length, 2);
});

t.test('an event whose client was removed from the registry fails at once, without a request', async (t) => {
  const gw = await webhookGateway(t);
  const hooks = await receiver(t);
  const created = await createVideo(gw, { prompt: 'A tiger', callbackUrl: `${hooks.url}/h` });
  await advanceAndPoll(gw, 11_000);
  const withoutAlice = createDispatcher({
    deliveries: gw.store.deliveries,
    videos: gw.store.videos,
    bus: gw.bus,
    clock: gw.clock,
    random: () => 0.5,
    clients: createClientRegistry({ clients: testClientsFile.clients.filter((client) => client.id !== 'alice') }),
    agent: testAgent(t, 1_000),
    logger: { error() {}, warn() {}, info() {}, debug() {} },
    retryScheduleMs: [5_000],
    timeoutMs: 1_000,
    concurrency: 4,
    perHostConcurrency: 4,
  });
  t.equal(await withoutAlice.tick(), 1);
  t.equal(hooks.requests.length, 0, 'nothing signed with a secret the gateway no longer has');
  t.match((await deliveryLog(gw, created.id))[0], {
    attempt: 1,
    responseStatus: null,
    error: 'the client that owns this video is no longer configured',
  });
  t.match((await readVideo(gw, created.id)).webhook, { status: 'failed', attempts: 1 });
});

// ---------------------------------------------------------------------------------------------------------------
// Fairness
// ---------------------------------------------------------------------------------------------------------------

/** Videos completing at distinct times, in creation order, all to `callbackUrl`s given. */
async function completeVideos(gw: TestGateway, callbackUrls: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const callbackUrl of callbackUrls) {
    ids.push((await createVideo(gw, { prompt: 'A tiger', callbackUrl })).id);
    gw.clock.advance(100); // completes 100 ms after the previous one
  }
  await advanceAndPoll(gw, 11_000, 100);
  return ids;
}

t.test('a receiver that never answers takes at most its per-host share: other receivers are not delayed', async (t) => {
  for (const perHostConcurrency of [1, 2]) {
    const slow = await holdingReceiver(t);
    const fast = await receiver(t);
    const gw = await webhookGateway(t);
    // The slow receiver's three events are older than the fast one's, so they come first in every claim.
    await completeVideos(gw, [`${slow.url}/a`, `${slow.url}/b`, `${slow.url}/c`, `${fast.url}/d`]);
    const dispatcher = createDispatcher({
      deliveries: gw.store.deliveries,
      videos: gw.store.videos,
      bus: gw.bus,
      clock: gw.clock,
      random: () => 0.5,
      clients: createClientRegistry(testClientsFile),
      agent: testAgent(t, 60_000),
      logger: { error() {}, warn() {}, info() {}, debug() {} },
      retryScheduleMs: [5_000],
      timeoutMs: 60_000,
      concurrency: 2,
      perHostConcurrency,
    });
    const running = dispatcher.tick();
    if (perHostConcurrency === 1) {
      await until(() => slow.requests.length === 1 && fast.requests.length === 1, 'one attempt at each receiver');
      t.equal(await dispatcher.tick(), 0, 'cap 1: the slow receiver’s other events wait for its slot, nothing else is due');
      t.equal(slow.requests.length, 1, 'cap 1: one attempt held by the slow receiver');
      t.equal(fast.requests.length, 1, 'cap 1: the other receiver got its event at once');
    } else {
      // Without a per-host cap below the global one, the slow receiver's older events take every slot.
      await until(() => slow.requests.length === 2, 'two attempts at the slow receiver');
      t.equal(await dispatcher.tick(), 0, 'no slot left');
      t.equal(fast.requests.length, 0, 'no cap: the other receiver starves');
    }
    slow.release();
    await running;
    await dispatcher.stop();
  }
});

t.test('the gateway’s dispatcher caps one receiver at 4 attempts in flight', async (t) => {
  const slow = await holdingReceiver(t);
  const fast = await receiver(t);
  const gw = await webhookGateway(t);
  await completeVideos(gw, [...Array.from({ length: 6 }, (_, i) => `${slow.url}/${i}`), `${fast.url}/x`]);
  const running = gw.dispatcher.tick();
  await until(() => slow.requests.length === 4 && fast.requests.length === 1, 'four held attempts and the other receiver served');
  t.equal(await gw.dispatcher.tick(), 0, 'the slow receiver is at its cap; its two other events wait');
  t.equal(slow.requests.length, 4);
  slow.release();
  await running;
  t.equal(await gw.dispatcher.tick(), 2, 'the rest go once slots free up');
  t.equal(slow.requests.length, 6);
});

// ---------------------------------------------------------------------------------------------------------------
// Delivery log and redelivery
// ---------------------------------------------------------------------------------------------------------------

t.test('redeliver: 409 while running; then the terminal event again, same id and bytes, a fresh schedule', async (t) => {
  const gw = await webhookGateway(t, { WEBHOOK_RETRY_SCHEDULE: '1s' });
  let answer = 204;
  const hooks = await receiver(t, (_request, response) => sendText(response, answer, ''));
  const created = await createVideo(gw, { prompt: 'A tiger', callbackUrl: `${hooks.url}/h` });
  const redeliver = (id: string, who: 'alice' | 'bob' = 'alice') =>
    gw.app.inject({ method: 'POST', url: `/videos/${id}/deliveries/redeliver`, headers: auth(who) });

  const early = await redeliver(created.id);
  t.equal(early.statusCode, 409);
  t.equal(early.json().code, 'video_not_terminal');
  t.match(early.headers['content-type'], /application\/problem\+json/);

  await advanceAndPoll(gw, 11_000);
  await gw.dispatcher.tick();
  t.equal((await readVideo(gw, created.id)).webhook?.status, 'delivered');

  const accepted = await redeliver(created.id);
  t.equal(accepted.statusCode, 202);
  t.same(accepted.json(), { messageId: hooks.requests[0]?.headers['webhook-id'], eventType: 'video.completed', status: 'pending' });
  t.match((await readVideo(gw, created.id)).webhook, { status: 'pending', attempts: 1, nextAttemptAt: iso(gw.clock.now()) });
  gw.clock.advance(2_000);
  t.equal(await gw.dispatcher.tick(), 1);
  t.equal(hooks.requests[1]?.headers['webhook-id'], hooks.requests[0]?.headers['webhook-id'], 'same webhook-id');
  t.equal(hooks.requests[1]?.body, hooks.requests[0]?.body, 'same bytes');
  t.same(
    (await deliveryLog(gw, created.id)).map((entry) => entry.attempt),
    [2, 1],
  );

  // A delivery that ran out of retries gets a whole new schedule.
  answer = 500;
  await redeliver(created.id);
  await gw.dispatcher.tick();
  gw.clock.advance(1_000);
  await gw.dispatcher.tick();
  t.match((await readVideo(gw, created.id)).webhook, { status: 'failed', attempts: 4 });
  await redeliver(created.id);
  await gw.dispatcher.tick();
  t.match((await readVideo(gw, created.id)).webhook, { status: 'retrying', attempts: 5 }, 'retried again, not failed at once');

  t.equal((await redeliver(created.id, 'bob')).statusCode, 404, 'another client’s video is not found');
  t.equal((await gw.app.inject({ method: 'GET', url: `/videos/${created.id}/deliveries`, headers: auth('bob') })).statusCode, 404);
  t.equal((await redeliver('vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC')).statusCode, 404);
  t.equal((await gw.app.inject({ method: 'POST', url: `/videos/${created.id}/deliveries/redeliver` })).statusCode, 401);

  const silent = await createVideo(gw, { prompt: 'No hooks here' });
  await advanceAndPoll(gw, 11_000);
  const none = await redeliver(silent.id);
  t.equal(none.statusCode, 404);
  t.match(none.json().detail, /no webhook to redeliver/);
  t.same(await deliveryLog(gw, silent.id), []);
  t.equal((await readVideo(gw, silent.id)).webhook, null);
});

// ---------------------------------------------------------------------------------------------------------------
// SSRF at connect time
// ---------------------------------------------------------------------------------------------------------------

t.test('at delivery time an internal address is refused, even when the URL got past the request-time check', async (t) => {
  const gw = await webhookGateway(t, { WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'false' });
  const hooks = await receiver(t);
  const refused = await gw.app.inject({
    method: 'POST',
    url: '/videos',
    headers: auth(),
    payload: { prompt: 'A tiger', callbackUrl: `${hooks.url}/h` },
  });
  t.equal(refused.statusCode, 400, 'the request-time check refuses the loopback literal');

  // As if DNS changed after the check (rebinding), or the row predates a policy change: written straight to the store.
  const now = gw.clock.now();
  const stored = async (n: number, callbackUrl: string): Promise<VideoRecord> => {
    const video = await gw.store.videos.insert({
      id: `vid_01JDXYZ8M6X1ZP3V9R4QK7T2H${n}`,
      clientId: 'alice',
      upstreamId: `up-rebind-${n}`,
      status: 'processing',
      upstreamState: 'dreaming',
      request: videoRequest({ prompt: 'A tiger', callbackUrl }),
      estimatedWaitSeconds: null,
      result: null,
      failure: null,
      createdAt: now,
      nextPollAt: now + 60_000,
    });
    await gw.store.videos.applyTransition(
      video.id,
      now,
      {
        status: 'failed',
        upstreamState: 'failed',
        estimatedWaitSeconds: null,
        result: null,
        failure: { code: 'upstream_failed', message: 'x' },
      },
      null,
      [{ messageId: `msg_rebind_${n}`, eventType: 'video.failed' }],
    );
    return video;
  };
  const byName = await stored(1, `http://localhost:${hooks.port}/h`);
  const byLiteral = await stored(2, `http://127.0.0.1:${hooks.port}/h`);
  t.equal(await gw.dispatcher.tick(), 2);
  t.equal(hooks.requests.length, 0, 'nothing reached the internal receiver');
  t.match((await deliveryLog(gw, byName.id))[0], {
    responseStatus: null,
    error: 'callback host does not resolve to an allowed address',
  });
  t.match((await deliveryLog(gw, byLiteral.id))[0], { responseStatus: null, error: 'callback host is a forbidden address' });
  t.match((await readVideo(gw, byName.id)).webhook, { status: 'retrying', attempts: 1, lastResponseStatus: null });
});

// ---------------------------------------------------------------------------------------------------------------
// The store's side: leases and fencing
// ---------------------------------------------------------------------------------------------------------------

t.test('claims never hand one delivery to two dispatchers; an expired lease is claimed again; a lost lease cannot overwrite', async (t) => {
  const path = `${t.testdir()}/gateway.db`;
  const gw = await webhookGateway(t, {}, { sqlitePath: path });
  const hooks = await receiver(t);
  await completeVideos(gw, [`${hooks.url}/1`, `${hooks.url}/2`, `${hooks.url}/3`]);
  const other = await openSqliteStore({ path }); // a second process on the same file
  t.teardown(() => other.close());
  const now = gw.clock.now();
  const [mine, theirs] = await Promise.all([
    gw.store.deliveries.claimDue(now, { limit: 2, leaseMs: 10_000 }),
    other.deliveries.claimDue(now, { limit: 2, leaseMs: 10_000 }),
  ]);
  const ids = [...(mine ?? []), ...(theirs ?? [])].map((delivery) => delivery.messageId);
  t.equal(ids.length, 3, 'every due delivery claimed once');
  t.equal(new Set(ids).size, 3, 'no delivery claimed twice');
  t.same(await gw.store.deliveries.claimDue(now + 9_999, { limit: 10, leaseMs: 10_000 }), [], 'leases hold');

  const reclaimed = await other.deliveries.claimDue(now + 10_000, { limit: 10, leaseMs: 10_000 });
  t.equal(reclaimed.length, 3, 'expired leases are claimed again (a crashed dispatcher)');
  const stale = [...(mine ?? []), ...(theirs ?? [])][0];
  if (stale === undefined) return;
  const written = await gw.store.deliveries.recordAttempt({
    messageId: stale.messageId,
    leaseUntil: stale.leaseUntil,
    attempt: 1,
    at: now,
    durationMs: 5,
    responseStatus: 500,
    error: null,
    responseExcerpt: 'boom',
    next: { status: 'failed', nextAttemptAt: null },
    now,
  });
  t.equal(written, undefined, 'the old claim no longer owns the row');
  const video = await gw.store.videos.get(stale.videoId);
  t.equal(video?.webhook?.status, 'pending', 'its outcome was not applied');
  t.equal((await gw.store.deliveries.listAttempts(stale.videoId, 10)).length, 1, 'but the attempt is in the log');
});
