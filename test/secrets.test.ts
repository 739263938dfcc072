/**
 * A full run at LOG_LEVEL=trace — creates, polling to completion, webhooks (with a failed attempt and a retry),
 * reads, list, SSE, deliveries, 401s, validation errors, 404s, upstream 401/5xx/HTML faults, an open circuit —
 * with every log line, every response and every webhook request captured: none of them may carry the ElkAPI
 * key, a client key or a webhook secret.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';

import type { InjectOptions } from 'fastify';
import { Webhook } from 'standardwebhooks';
import t from 'tap';

import type { WebhookEvent } from '../schemas/deliveries.js';
import type { Video } from '../schemas/video.js';
import { advanceAndPoll, auth, clientKeys, startTestGateway, webhookSecrets } from './helpers/gateway.js';

const elkapiKey = 'elk-test-key-do-not-leak';

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

t.test('no secret appears in any log line, response or webhook over a full run, error paths included', async (t) => {
  // The webhook receiver: fails the first delivery (the retry path runs too), then accepts.
  const received: Received[] = [];
  const receiver = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      received.push({ headers: request.headers, body: Buffer.concat(chunks).toString('utf8') });
      response
        .writeHead(received.length === 1 ? 500 : 200, { 'content-type': 'text/plain' })
        .end(received.length === 1 ? 'try again' : 'ok');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => receiver.close(() => resolve())));
  const callbackUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/videos`;

  const logLines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      logLines.push(chunk.toString());
      done();
    },
  });
  const gw = await startTestGateway(t, {
    env: { LOG_LEVEL: 'trace', WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' },
    // The test's own stream: redaction must apply to it as to the default logger.
    gateway: { logger: { level: 'trace', stream } },
  });

  const responses: string[] = [];
  const call = async (request: InjectOptions) => {
    const response = await gw.app.inject(request);
    responses.push(`${response.statusCode} ${JSON.stringify(response.headers)}\n${response.body}`);
    return response;
  };
  const alice = auth('alice');

  // Operations routes.
  for (const url of ['/healthz', '/readyz', '/docs/json']) await call({ method: 'GET', url });

  // Creates: with a callback and every event, replayed by Idempotency-Key, and one for bob.
  const createWithKey: InjectOptions = {
    method: 'POST',
    url: '/videos',
    headers: { ...alice, 'idempotency-key': 'create-1' },
    payload: {
      prompt: 'A tiger walking in snow',
      callbackUrl,
      webhookEvents: ['video.processing', 'video.completed', 'video.failed'],
      metadata: { userId: 'u_42' },
    },
  };
  const created = await call(createWithKey);
  t.equal(created.statusCode, 202);
  const videoId = created.json<Video>().id;
  await call(createWithKey); // the replay
  const bobs = await call({
    method: 'POST',
    url: '/videos',
    headers: auth('bob'),
    payload: { prompt: 'Bob’s failing video [fail]', callbackUrl },
  });
  const bobsId = bobs.json<Video>().id;

  // Credentials sent wrong, or in the wrong place: refused, and never logged as sent.
  const misplaced: InjectOptions[] = [
    { method: 'GET', url: `/videos/${videoId}` },
    { method: 'GET', url: `/videos/${videoId}`, headers: { authorization: 'Bearer vgk_not_a_real_key_0123456789' } },
    { method: 'GET', url: `/videos/${videoId}?api_key=${clientKeys.alice}`, headers: { authorization: `Token ${clientKeys.alice}` } },
    { method: 'GET', url: `/videos?key=${encodeURIComponent(clientKeys.bob)}`, headers: { 'x-api-key': clientKeys.bob } },
    { method: 'GET', url: '/videos', headers: { authorization: `Basic ${Buffer.from(`${clientKeys.alice}:`).toString('base64')}` } },
    { method: 'GET', url: '/healthz', headers: { 'x-request-id': clientKeys.alice, cookie: `session=${clientKeys.alice}` } },
    { method: 'GET', url: `/nope?secret=${encodeURIComponent(webhookSecrets.alice)}`, headers: alice },
  ];
  for (const request of misplaced) await call(request);

  // Validation errors, with secrets inside the refused input.
  await call({
    method: 'POST',
    url: '/videos',
    headers: alice,
    payload: { prompt: 12, apiKey: clientKeys.alice, webhookSecret: webhookSecrets.bob },
  });
  await call({ method: 'POST', url: '/videos', headers: { ...alice, 'content-type': 'text/plain' }, payload: `key=${clientKeys.alice}` });
  await call({
    method: 'POST',
    url: '/videos',
    headers: { ...alice, 'content-type': 'application/json' },
    payload: `{"prompt": "${webhookSecrets.alice}`,
  });
  await call({ method: 'GET', url: `/videos/${videoId}?wait=abc`, headers: alice });

  // Not found: unknown and foreign ids.
  await call({ method: 'GET', url: '/videos/vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC', headers: alice });
  await call({ method: 'GET', url: `/videos/${bobsId}`, headers: alice });

  // Upstream faults on creates: the gateway's key refused, 5xx, an HTML page.
  gw.sandbox.injectFault({ op: 'create', status: 401, body: { error: { message: `Invalid token ${elkapiKey}` } } });
  gw.sandbox.injectFault({ op: 'create', status: 500 });
  gw.sandbox.injectFault({ op: 'create', html: true, status: 502 });
  for (let i = 0; i < 3; i++) await call({ method: 'POST', url: '/videos', headers: alice, payload: { prompt: 'An upstream in trouble' } });
  await call({ method: 'GET', url: '/readyz' });

  // Polling to the end, through query faults (401, 5xx, HTML), and webhook delivery with a retry.
  gw.sandbox.injectFault({ op: 'query', status: 401, body: { error: { message: 'Invalid token' } } });
  gw.sandbox.injectFault({ op: 'query', status: 503, times: 2 });
  gw.sandbox.injectFault({ op: 'query', html: true, status: 502 });
  for (let second = 0; second < 40; second++) {
    await advanceAndPoll(gw, 1_000);
    await gw.dispatcher.tick();
  }
  t.ok(received.length >= 3, `the receiver got webhooks (${received.length})`);

  // Reads of every kind once everything is terminal.
  await call({ method: 'GET', url: `/videos/${videoId}`, headers: alice });
  await call({ method: 'GET', url: `/videos/${videoId}?wait=5`, headers: alice });
  await call({ method: 'GET', url: '/videos?limit=5', headers: alice });
  await call({ method: 'GET', url: `/videos/${videoId}/events`, headers: alice });
  await call({ method: 'GET', url: `/videos/${videoId}/deliveries`, headers: alice });
  await call({ method: 'POST', url: `/videos/${videoId}/deliveries/redeliver`, headers: alice });
  await gw.dispatcher.tick();

  // An open circuit.
  gw.sandbox.injectFault({ op: 'create', status: 503, times: 5 });
  for (let i = 0; i < 6; i++) await call({ method: 'POST', url: '/videos', headers: alice, payload: { prompt: 'A storm at sea' } });
  t.equal(gw.circuitState(), 'open');
  await call({ method: 'GET', url: '/readyz' });
  await call({ method: 'GET', url: '/metrics' });

  // The run really was observed: trace-level lines, the refused key, errors, every kind of answer.
  // One line per request (no separate "incoming request" line), so fewer than before.
  t.ok(logLines.length > 60, `${logLines.length} log lines captured`);
  t.equal(gw.app.log.level, 'trace');
  for (const [needle, what] of [
    ['"level":20', 'debug lines too'],
    ['ElkAPI refused the gateway key', 'the upstream auth failure is logged'],
    ['upstream circuit opened', 'the open circuit is logged'],
    ['api_key=[redacted]', 'a key pasted into a URL is logged redacted'],
  ] as const) {
    t.ok(
      logLines.some((line) => line.includes(needle)),
      what,
    );
  }
  for (const status of ['200', '202', '400', '401', '404', '415', '502', '503']) {
    t.ok(
      responses.some((response) => response.startsWith(`${status} `)),
      `a ${status} answer was captured`,
    );
  }

  // Webhooks were signed with the secret, which they never carry. (Signatures are recomputed rather than
  // `verify()`-ed: verify compares the timestamp with the real time, and this run is on a manual clock.)
  const signed = received.filter((delivery) => (JSON.parse(delivery.body) as WebhookEvent).data.id === videoId);
  t.ok(signed.length >= 2, 'alice’s video sent its webhooks');
  for (const delivery of signed) {
    const { 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': signature } = delivery.headers;
    const expected = new Webhook(webhookSecrets.alice).sign(String(id), new Date(Number(timestamp) * 1000), delivery.body);
    t.equal(signature, expected, 'signed with alice’s secret');
  }

  const secrets: Record<string, string> = {
    'the ElkAPI key': elkapiKey,
    'alice’s key': clientKeys.alice,
    'bob’s key': clientKeys.bob,
    'alice’s webhook secret': webhookSecrets.alice,
    'bob’s webhook secret': webhookSecrets.bob,
    // The key material without its prefix: what the HMAC actually uses.
    'alice’s secret bytes': webhookSecrets.alice.slice('whsec_'.length),
    'bob’s secret bytes': webhookSecrets.bob.slice('whsec_'.length),
  };
  const webhookTraffic = received.map((delivery) => `${JSON.stringify(delivery.headers)}\n${delivery.body}`);
  for (const [name, secret] of Object.entries(secrets)) {
    const variants = [secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)];
    const found = (texts: string[]): string | undefined => texts.find((text) => variants.some((variant) => text.includes(variant)));
    t.equal(found(logLines), undefined, `${name} is in no log line`);
    t.equal(found(responses), undefined, `${name} is in no response`);
    t.equal(found(webhookTraffic), undefined, `${name} is in no webhook`);
  }
});
