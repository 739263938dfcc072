import t from 'tap';

import { createClientRegistry } from '../src/auth/clients.js';
import { countInWindow } from '../src/http/client-rate-limits.js';
import { auth, startTestGateway, testClientsFile, type TestGateway } from './helpers/gateway.js';

/** Alice: 5 requests and 2 creates a minute; Bob keeps the defaults. */
const limitedClients = () =>
  createClientRegistry({
    clients: testClientsFile.clients.map((client) =>
      client.id === 'alice' ? { ...client, rateLimitPerMinute: 5, createLimitPerMinute: 2 } : client,
    ),
  });

const read = (gw: TestGateway, who: 'alice' | 'bob' = 'alice') => gw.app.inject({ method: 'GET', url: '/videos', headers: auth(who) });
const create = (gw: TestGateway, who: 'alice' | 'bob' = 'alice') =>
  gw.app.inject({ method: 'POST', url: '/videos', headers: auth(who), payload: { prompt: 'A tiger walking in snow' } });

t.test('fixed one-minute windows', async (t) => {
  const first = countInWindow(undefined, 1000, 60_000);
  t.same(first, { count: 1, windowStart: 1000 });
  const second = countInWindow(first, 60_999, 60_000);
  t.same(second, { count: 2, windowStart: 1000 }, 'same window until its end');
  t.same(countInWindow(second, 61_000, 60_000), { count: 1, windowStart: 61_000 }, 'a new window after a minute');
});

t.test('rateLimitPerMinute: every answer carries the counters; past the limit a 429 rate_limited problem with retry-after', async (t) => {
  const gw = await startTestGateway(t, { gateway: { clients: limitedClients() } });
  for (let i = 1; i <= 5; i++) {
    const response = await read(gw);
    t.equal(response.statusCode, 200);
    t.equal(response.headers['x-ratelimit-limit'], '5');
    t.equal(response.headers['x-ratelimit-remaining'], String(5 - i));
    t.equal(response.headers['x-ratelimit-reset'], '60');
  }
  gw.clock.advance(20_000);
  const limited = await read(gw);
  t.equal(limited.statusCode, 429);
  t.equal(limited.headers['content-type'], 'application/problem+json; charset=utf-8');
  t.equal(limited.json().code, 'rate_limited');
  t.equal(limited.json().status, 429);
  t.equal(limited.headers['retry-after'], '40', 'seconds until the window ends');
  t.equal(limited.headers['x-ratelimit-remaining'], '0');
  t.equal(limited.headers['x-ratelimit-limit'], '5');
  t.ok(limited.headers['x-request-id']);
  t.notMatch(limited.body, /vgk_/, 'no key in the problem');

  const otherRoute = await gw.app.inject({ method: 'GET', url: '/videos/vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC', headers: auth() });
  t.equal(otherRoute.statusCode, 429, 'the limit covers every /videos route');

  t.equal((await read(gw, 'bob')).statusCode, 200, 'another client is not affected');

  gw.clock.advance(40_000);
  const nextWindow = await read(gw);
  t.equal(nextWindow.statusCode, 200, 'a new window after a minute');
  t.equal(nextWindow.headers['x-ratelimit-remaining'], '4');
});

t.test('createLimitPerMinute counts POST /videos only, and refused creates never reach the upstream', async (t) => {
  const gw = await startTestGateway(t, { gateway: { clients: limitedClients() } });
  const first = await create(gw);
  t.equal(first.statusCode, 202);
  t.equal(first.headers['x-ratelimit-limit'], '2', 'the tighter limit is reported');
  t.equal(first.headers['x-ratelimit-remaining'], '1');
  t.equal((await create(gw)).statusCode, 202);

  const third = await create(gw);
  t.equal(third.statusCode, 429);
  t.equal(third.json().code, 'rate_limited');
  t.match(third.json().detail, /video creations/);
  t.equal(third.headers['retry-after'], '60');
  t.equal(gw.sandbox.stats.creates, 2, 'the refused create cost no upstream call');

  const reading = await read(gw);
  t.equal(reading.statusCode, 200, 'reads still pass: 4 of 5 requests used');
  t.equal(reading.headers['x-ratelimit-remaining'], '1');
});

t.test('unauthenticated requests get 401 first and are not counted against anyone', async (t) => {
  const gw = await startTestGateway(t, { gateway: { clients: limitedClients() } });
  for (let i = 0; i < 10; i++) {
    const response = await gw.app.inject({ method: 'GET', url: '/videos', headers: { authorization: 'Bearer vgk_unknown' } });
    t.equal(response.statusCode, 401);
    t.equal(response.headers['x-ratelimit-limit'], undefined);
  }
  const response = await read(gw);
  t.equal(response.statusCode, 200);
  t.equal(response.headers['x-ratelimit-remaining'], '4', 'alice’s budget is untouched');
});

t.test('only valid creates spend the create budget: a 400 costs none, an idempotent replay costs none', async (t) => {
  const clients = createClientRegistry({
    clients: testClientsFile.clients.map((client) => (client.id === 'alice' ? { ...client, createLimitPerMinute: 2 } : client)),
  });
  const gw = await startTestGateway(t, { gateway: { clients } });
  for (const payload of [{ prompt: 'x' }, { prompt: 'A tiger', callbackUrl: 'https://127.0.0.1/hook' }]) {
    const invalid = await gw.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload });
    t.equal(invalid.statusCode, 400, 'refused by the schema, then by a domain rule');
  }
  const keyed = { ...auth(), 'idempotency-key': 'k-1' };
  const valid = await gw.app.inject({ method: 'POST', url: '/videos', headers: keyed, payload: { prompt: 'A tiger walking in snow' } });
  t.equal(valid.statusCode, 202, 'the invalid attempts used no create budget');
  const replay = await gw.app.inject({ method: 'POST', url: '/videos', headers: keyed, payload: { prompt: 'A tiger walking in snow' } });
  t.equal(replay.headers['idempotent-replayed'], 'true');
  t.equal((await create(gw)).statusCode, 202, 'the replay started no generation and cost no create');
  const third = await create(gw);
  t.equal(third.statusCode, 429, 'the third real create is over the limit of 2');
  t.match(third.json().detail, /video creations/);
});

t.test('one budget across every authenticated /videos route, webhook deliveries included', async (t) => {
  const gw = await startTestGateway(t, { gateway: { clients: limitedClients() } });
  for (let i = 0; i < 4; i++) t.equal((await read(gw)).statusCode, 200);
  const deliveries = await gw.app.inject({ method: 'GET', url: '/videos/vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC/deliveries', headers: auth() });
  t.equal(deliveries.statusCode, 404, 'the fifth request, on another plugin');
  t.equal(deliveries.headers['x-ratelimit-remaining'], '0');
  t.equal((await read(gw)).statusCode, 429, 'the sixth is refused wherever it goes');
  const limited = await gw.app.inject({ method: 'GET', url: '/videos/vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC/deliveries', headers: auth() });
  t.equal(limited.statusCode, 429);
  t.equal(limited.json().code, 'rate_limited');
});
