// API conventions a client relies on without reading every route (DESIGN §2.4): 405 with Allow, unknown query
// parameters refused, enum errors that list the allowed values, no-body routes that accept what curl sends, and
// `POST /webhooks/test` against a real receiver.
import { Webhook } from 'standardwebhooks';
import t from 'tap';

import type { WebhookTestResult } from '../schemas/deliveries.js';
import type { Problem } from '../schemas/problem.js';
import { createMethodIndex } from '../src/http/route-conventions.js';
import { auth, createVideo, startTestGateway, webhookSecrets } from './helpers/gateway.js';
import { ManualClock } from './helpers/manual-time.js';
import { flatHeaders, sendText, startScriptedServer } from './helpers/scripted-server.js';

t.test('a known path with a method it does not serve: 405 method_not_allowed with Allow', async (t) => {
  const gw = await startTestGateway(t);
  for (const [method, url, allow] of [
    ['PUT', '/videos', 'GET, HEAD, POST'],
    ['DELETE', '/healthz', 'GET, HEAD'],
    ['PATCH', '/videos/vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC', 'DELETE, GET, HEAD'],
    ['GET', '/videos/vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC/deliveries/redeliver', 'POST'],
    ['GET', '/webhooks/test', 'POST'],
  ] as const) {
    const response = await gw.app.inject({ method, url, headers: auth() });
    t.equal(response.statusCode, 405, `${method} ${url}`);
    t.equal(response.headers['allow'], allow);
    t.match(response.headers['content-type'], /application\/problem\+json/);
    t.match(response.json<Problem>(), { code: 'method_not_allowed', status: 405, detail: new RegExp(`^${method} is not allowed`) });
  }
  const index = createMethodIndex();
  index.add({ method: 'OPTIONS', url: '*', handler: () => undefined });
  index.add({ method: ['GET', 'HEAD'], url: '/videos/:id', handler: () => undefined });
  t.same(index.allowed('/nothing-here'), [], 'a catch-all route (CORS preflight) does not make every path known');
  t.same(index.allowed('/videos/vid_1'), ['GET', 'HEAD']);
  t.ok(index.servedEverywhere('options'), 'a catch-all method is served on every path, never a 405');
  t.notOk(index.servedEverywhere('PUT'));
  const unknown = await gw.app.inject({ method: 'PUT', url: '/nothing-here', headers: auth() });
  t.equal(unknown.statusCode, 404, 'an unknown path stays a 404');
  t.equal(unknown.json<Problem>().code, 'not_found');
});

t.test('unknown query parameters are a 400 naming them, on every route', async (t) => {
  const gw = await startTestGateway(t);
  const video = await createVideo(gw, { prompt: 'A tiger walking in snow' });
  for (const url of [
    '/videos?metadata.userId=u_42',
    `/videos/${video.id}?wiat=5`,
    `/videos/${video.id}/deliveries?page=2`,
    '/healthz?verbose=1',
    '/readyz?deep=true',
    '/metrics?name=gateway_http',
  ]) {
    const response = await gw.app.inject({ method: 'GET', url, headers: auth() });
    t.equal(response.statusCode, 400, url);
    const name = new URL(url, 'http://x').searchParams.keys().next().value ?? '';
    t.match(response.json<Problem>(), {
      code: 'validation_failed',
      errors: [{ path: `/querystring/${name}`, message: 'is not a known query parameter' }],
    });
  }
  t.equal(
    (await gw.app.inject({ method: 'GET', url: '/videos?limit=5&status=queued', headers: auth() })).statusCode,
    200,
    'known ones work',
  );
  t.equal((await gw.app.inject({ method: 'GET', url: '/docs/json?v=2' })).statusCode, 200, 'the docs are left alone');
});

t.test('enum errors list the allowed values', async (t) => {
  const gw = await startTestGateway(t);
  const create = await gw.app.inject({
    method: 'POST',
    url: '/videos',
    headers: auth(),
    payload: { prompt: 'A tiger', aspectRatio: '2:1' },
  });
  t.equal(create.statusCode, 400);
  t.same(create.json<Problem>().errors, [{ path: '/body/aspectRatio', message: 'must be one of: 16:9, 9:16, 1:1, 4:3, 3:4, 21:9, 9:21' }]);
  const list = await gw.app.inject({ method: 'GET', url: '/videos?status=done', headers: auth() });
  t.same(list.json<Problem>().errors, [{ path: '/querystring/status', message: 'must be one of: queued, processing, completed, failed' }]);
});

/** What a route that takes no body accepts: none, an empty one whatever its content type says, or `{}`. */
const noBodies = [
  ['no body', {}, undefined],
  ["curl -d ''", { 'content-type': 'application/x-www-form-urlencoded' }, ''],
  ['empty JSON body', { 'content-type': 'application/json' }, ''],
  ['{}', { 'content-type': 'application/json' }, '{}'],
] as const;

t.test('redeliver takes no body, an empty body with any content type, or {}; anything else is a 400', async (t) => {
  const gw = await startTestGateway(t);
  // A running video: getting past parsing shows as 409 video_not_terminal.
  const video = await createVideo(gw, { prompt: 'A tiger walking in snow' });
  const url = `/videos/${video.id}/deliveries/redeliver`;
  for (const [what, headers, payload] of noBodies) {
    const response = await gw.app.inject({
      method: 'POST',
      url,
      headers: { ...auth(), ...headers },
      ...(payload === undefined ? {} : { payload }),
    });
    t.equal(response.json<Problem>().code, 'video_not_terminal', what);
  }
  const withFields = await gw.app.inject({ method: 'POST', url, headers: auth(), payload: { force: true } });
  t.equal(withFields.statusCode, 400);
  t.same(withFields.json<Problem>().errors, [{ path: '/body', message: 'must be empty or {}' }]);
  const text = await gw.app.inject({ method: 'POST', url, headers: { ...auth(), 'content-type': 'text/plain' }, payload: 'please' });
  t.equal(text.statusCode, 415, 'a non-empty body that is not JSON is still a 415');
});

t.test('minting a stream token takes no body, an empty body with any content type, or {}, like redeliver', async (t) => {
  const gw = await startTestGateway(t);
  const video = await createVideo(gw, { prompt: 'A tiger walking in snow' });
  const url = `/videos/${video.id}/stream-tokens`;
  for (const [what, headers, payload] of noBodies) {
    const response = await gw.app.inject({
      method: 'POST',
      url,
      headers: { ...auth(), ...headers },
      ...(payload === undefined ? {} : { payload }),
    });
    t.equal(response.statusCode, 200, what);
  }
  const withFields = await gw.app.inject({ method: 'POST', url, headers: auth(), payload: { ttl: 60 } });
  t.equal(withFields.statusCode, 400);
  t.same(withFields.json<Problem>().errors, [{ path: '/body', message: 'must be empty or {}' }]);
});

t.test("POST /webhooks/test: a signed webhook.test event, the receiver's status and latency", async (t) => {
  const gw = await startTestGateway(t, {
    clock: new ManualClock(Math.floor(Date.now() / 1000) * 1000), // signatures carry the clock: near real time
    env: { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' },
  });
  const receiver = await startScriptedServer();
  t.teardown(() => receiver.close());
  let status = 204;
  receiver.respond((_request, response) => sendText(response, status, ''));

  const test = (callbackUrl: string) => gw.app.inject({ method: 'POST', url: '/webhooks/test', headers: auth(), payload: { callbackUrl } });
  const ok = await test(`${receiver.url}/hooks?from=test`);
  t.equal(ok.statusCode, 200);
  const result = ok.json<WebhookTestResult>();
  t.match(result, { delivered: true, responseStatus: 204, error: null, callbackUrl: `${receiver.url}/hooks?from=test` });
  t.type(result.durationMs, 'number');
  const received = receiver.requests[0];
  t.equal(received?.url, '/hooks?from=test');
  t.equal(received?.headers['webhook-id'], result.messageId);
  const event = new Webhook(webhookSecrets.alice).verify(received?.body ?? '', flatHeaders(received?.headers ?? {})) as { type: string };
  t.equal(event.type, 'webhook.test', "signed with the client's own secret, verifiable with standardwebhooks");
  t.throws(
    () => new Webhook(webhookSecrets.bob).verify(received?.body ?? '', flatHeaders(received?.headers ?? {})),
    'not with another secret',
  );

  status = 500;
  t.match((await test(`${receiver.url}/hooks`)).json<WebhookTestResult>(), { delivered: false, responseStatus: 500 });
  status = 302;
  t.match((await test(`${receiver.url}/hooks`)).json<WebhookTestResult>(), { delivered: false, responseStatus: 302, error: /redirects/ });
  await receiver.close();
  t.match((await test(`${receiver.url}/hooks`)).json<WebhookTestResult>(), { delivered: false, responseStatus: null, error: /refused/ });

  const missing = await gw.app.inject({ method: 'POST', url: '/webhooks/test', headers: auth(), payload: {} });
  t.equal(missing.statusCode, 400);
  t.match(missing.json<Problem>().errors, [{ path: '/body/callbackUrl' }]);
  t.equal((await gw.app.inject({ method: 'POST', url: '/webhooks/test', payload: { callbackUrl: receiver.url } })).statusCode, 401);
});

t.test('POST /webhooks/test follows the same SSRF rules as real deliveries', async (t) => {
  const gw = await startTestGateway(t); // production switches: https only, no private networks
  const receiver = await startScriptedServer();
  t.teardown(() => receiver.close());
  for (const callbackUrl of [receiver.url, 'https://127.0.0.1/hooks', 'https://[::1]/hooks', 'https://169.254.169.254/latest']) {
    const response = await gw.app.inject({ method: 'POST', url: '/webhooks/test', headers: auth(), payload: { callbackUrl } });
    t.equal(response.statusCode, 400, callbackUrl);
    t.match(response.json<Problem>().errors, [{ path: '/body/callbackUrl' }]);
  }
  t.equal(receiver.requests.length, 0, 'nothing was sent');
});
