import t from 'tap';

import { validateClientsFile } from '../schemas/clients.js';
import type { StreamToken } from '../schemas/stream-tokens.js';
import { createClientRegistry } from '../src/auth/clients.js';
import { auth, createVideo, startTestGateway, testClientsFile, type TestGateway, upstreamIdOf } from './helpers/gateway.js';

const aliceOrigin = 'https://app.alice.test';
const bobOrigin = 'https://bob.example';
const strangerOrigin = 'https://evil.example';

const clientsWithOrigins = () =>
  createClientRegistry({
    clients: testClientsFile.clients.map((client) => ({
      ...client,
      allowedOrigins: client.id === 'alice' ? ['HTTPS://App.Alice.test:443', 'http://localhost:5173'] : [bobOrigin],
    })),
  });

const start = (t: Parameters<typeof startTestGateway>[0]): Promise<TestGateway> =>
  startTestGateway(t, { gateway: { clients: clientsWithOrigins() } });

const preflight = (gw: TestGateway, origin: string, method = 'POST', headers = 'authorization, content-type, idempotency-key') =>
  gw.app.inject({
    method: 'OPTIONS',
    url: '/videos',
    headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': headers },
  });

t.test('clients file: allowedOrigins are exact origins, normalised as browsers send them', async (t) => {
  const entry = testClientsFile.clients[0];
  for (const bad of [
    'https://app.example.com/',
    '*',
    'app.example.com',
    'https://*.example.com',
    'ftp://example.com',
    'https://a.com/path',
  ]) {
    const result = validateClientsFile({ clients: [{ ...entry, allowedOrigins: [bad] }] });
    t.equal(result.ok, false, bad);
    if (!result.ok)
      t.match(result.problems[0], {
        path: '/clients/0/allowedOrigins/0',
        message: /expected an origin such as https:\/\/app\.example\.com/,
      });
  }
  const registry = clientsWithOrigins();
  t.same(registry.get('alice')?.allowedOrigins, [aliceOrigin, 'http://localhost:5173']);
  t.same(createClientRegistry(testClientsFile).get('alice')?.allowedOrigins, [], 'none listed: no browser origin');
});

t.test('preflight: answered for a listed origin, without any credential', async (t) => {
  const gw = await start(t);
  const response = await preflight(gw, aliceOrigin);
  t.equal(response.statusCode, 204);
  t.equal(response.headers['access-control-allow-origin'], aliceOrigin);
  const methods = String(response.headers['access-control-allow-methods']).split(/,\s*/);
  for (const method of ['GET', 'POST', 'DELETE']) t.ok(methods.includes(method), `allows ${method}`);
  const allowed = String(response.headers['access-control-allow-headers']).split(/,\s*/);
  for (const header of ['authorization', 'content-type', 'idempotency-key', 'if-none-match'])
    t.ok(allowed.includes(header), `allows ${header}`);
  t.equal(response.headers['access-control-max-age'], '600');
  t.match(response.headers['vary'], /origin/i);
  t.equal(response.headers['access-control-allow-credentials'], undefined, 'no cookies: bearer credentials only');

  t.equal((await preflight(gw, bobOrigin)).headers['access-control-allow-origin'], bobOrigin, "any client's origin (the union)");
  const events = await gw.app.inject({
    method: 'OPTIONS',
    url: '/videos/vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC/events',
    headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'GET' },
  });
  t.equal(events.statusCode, 204);
});

t.test('an origin no client lists gets no CORS headers at all', async (t) => {
  const gw = await start(t);
  const response = await preflight(gw, strangerOrigin);
  t.equal(response.headers['access-control-allow-origin'], undefined);
  t.equal(response.headers['access-control-allow-methods'], undefined);
  t.equal(response.statusCode, 404);
  t.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8');
  const read = await gw.app.inject({ method: 'GET', url: '/videos', headers: { ...auth(), origin: strangerOrigin } });
  t.equal(read.statusCode, 200, 'the request itself is served (CORS is the browser’s rule)');
  t.equal(read.headers['access-control-allow-origin'], undefined);
  t.equal(read.headers['access-control-expose-headers'], undefined);
});

t.test("real responses carry CORS headers only when the caller's own client lists the origin", async (t) => {
  const gw = await start(t);
  const created = await gw.app.inject({
    method: 'POST',
    url: '/videos',
    headers: { ...auth(), origin: aliceOrigin },
    payload: { prompt: 'A tiger walking in snow' },
  });
  t.equal(created.statusCode, 202);
  t.equal(created.headers['access-control-allow-origin'], aliceOrigin);
  const exposed = String(created.headers['access-control-expose-headers']).split(/,\s*/);
  for (const header of [
    'etag',
    'location',
    'x-request-id',
    'x-ratelimit-limit',
    'x-ratelimit-remaining',
    'x-ratelimit-reset',
    'retry-after',
  ]) {
    t.ok(exposed.includes(header), `exposes ${header}`);
  }

  const bobFromAlice = await gw.app.inject({ method: 'GET', url: '/videos', headers: { ...auth('bob'), origin: aliceOrigin } });
  t.equal(bobFromAlice.statusCode, 200);
  t.equal(bobFromAlice.headers['access-control-allow-origin'], undefined, "bob's key from alice's page: the browser may not read it");
  t.equal(bobFromAlice.headers['access-control-expose-headers'], undefined);
  t.match(bobFromAlice.headers['vary'], /origin/i, 'caches keep answers per origin');

  const unauthorized = await gw.app.inject({ method: 'GET', url: '/videos', headers: { origin: aliceOrigin } });
  t.equal(unauthorized.statusCode, 401);
  t.equal(unauthorized.headers['access-control-allow-origin'], aliceOrigin, 'a listed page can read why it was refused');
});

t.test('EventSource from a listed origin: the token-authenticated stream carries CORS headers', async (t) => {
  const gw = await start(t);
  const video = await createVideo(gw);
  gw.sandbox.completeNow(await upstreamIdOf(gw, video.id));
  gw.clock.advance(2_000);
  await gw.poller.tick();
  const minted = await gw.app.inject({
    method: 'POST',
    url: `/videos/${video.id}/stream-tokens`,
    headers: { ...auth(), origin: aliceOrigin },
  });
  t.equal(minted.headers['access-control-allow-origin'], aliceOrigin);
  const { token } = minted.json<StreamToken>();
  const stream = await gw.app.inject({ method: 'GET', url: `/videos/${video.id}/events?token=${token}`, headers: { origin: aliceOrigin } });
  t.equal(stream.statusCode, 200);
  t.equal(stream.headers['access-control-allow-origin'], aliceOrigin, 'set before the route writes the raw stream');
  t.match(stream.body, /"status":"completed"/);
  const fromBob = await gw.app.inject({ method: 'GET', url: `/videos/${video.id}/events?token=${token}`, headers: { origin: bobOrigin } });
  t.equal(fromBob.headers['access-control-allow-origin'], undefined, "alice's stream on bob's page: not readable");
});
