// Exact-secret scrubbing (issue 13 item 6): secrets of any shape — an ElkAPI key `elk-prod-…` echoed by the
// upstream, a client key without the `vgk_` prefix pasted as a request id or a query value — never reach a client
// or a log line.
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';

import t, { type Test } from 'tap';

import type { WebhookEvent } from '../schemas/deliveries.js';
import type { Video } from '../schemas/video.js';
import { createClientRegistry } from '../src/auth/clients.js';
import { createSecretScrubber, looksLikeBearerToken } from '../src/lib/secrets.js';
import { advanceAndPoll, auth, startTestGateway, testClientsFile, upstreamIdOf } from './helpers/gateway.js';
import { sendText, startScriptedServer } from './helpers/scripted-server.js';

// No pattern catches it: hyphenated, short runs, no `key=` before it.
const elkapiKey = 'elk-prod-7Hq2-xK9p-Lm4v';
// Client keys without the `vgk_` prefix: one random-looking, one lower-case hex (only its hash betrays it).
const carolKey = 'Q2Fyb2xLZXkxMjM0NTY3ODkwYWJjZGVm';
const daveKey = 'a3f9c2e1d4b5a6f7e8d9c0b1a2f3e4d5';
const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

t.test('the scrubber: exact secrets in every encoding, credential shapes, client keys, bearer-looking values', async (t) => {
  const isClientKey = (candidate: string): boolean => candidate === daveKey;
  const scrubber = createSecretScrubber({ exact: [elkapiKey, 'quote"key\\x', 'short'], isClientKey });
  t.equal(scrubber.scrub(`Prompt refused for account ${elkapiKey}: policy`), 'Prompt refused for account [redacted]: policy');
  t.equal(scrubber.scrub(JSON.stringify({ msg: 'with quote"key\\x inside' })), '{"msg":"with [redacted] inside"}');
  t.equal(scrubber.scrub(`/v?k=${encodeURIComponent('quote"key\\x')}`), '/v?k=[redacted]');
  t.equal(scrubber.scrub('a short word stays'), 'a short word stays');
  t.equal(scrubber.scrub('Bearer abc.def and vgk_abcdefgh12'), '[redacted] and [redacted]');

  for (const secretLike of [carolKey, daveKey, elkapiKey, 'vgk_abcdefgh12', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.c2ln']) {
    t.ok(scrubber.isSecret(secretLike), `${secretLike} is a secret`);
  }
  for (const requestId of ['mobile-77', '3f2b9a40-6c1d-4e8f-9a2b-1c3d5e7f9a0b', '01JDXYZ8M6X1ZP3V9R4QK7T2HC', 'checkout-retry-2']) {
    t.notOk(scrubber.isSecret(requestId), `${requestId} is an ordinary id`);
  }
  t.notOk(looksLikeBearerToken('ABCDEFGHIJKLMNOPQRSTUV'), 'one case only is not a random key');

  t.equal(
    scrubber.redactUrl(`/videos?api_key=anything&limit=5&q=${daveKey}&x=${carolKey}&token=t0k3n`),
    '/videos?api_key=[redacted]&limit=5&q=[redacted]&x=[redacted]&token=[redacted]',
  );
  t.equal(scrubber.redactUrl('/videos/vid_1?wait=5'), '/videos/vid_1?wait=5');
  t.equal(scrubber.redactUrl(`/videos?${carolKey}`), '/videos?[redacted]', 'a bare value too');
});

function capture(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { lines, stream };
}

async function gatewayWithOddKeys(t: Test) {
  const { lines, stream } = capture();
  const clients = createClientRegistry({
    clients: [
      ...testClientsFile.clients,
      { id: 'carol', name: 'Carol', apiKeySha256: sha256(carolKey), webhookSecret: 'whsec_QmVuY2hTbG93Qm9kaWVzU2VjcmV0MTIzNA==' },
      { id: 'dave', name: 'Dave', apiKeySha256: sha256(daveKey), webhookSecret: 'whsec_RGF2ZVNlY3JldEtleU1hdGVyaWFsMTIzNA==' },
    ],
  });
  const gw = await startTestGateway(t, {
    env: { ELKAPI_API_KEY: elkapiKey, LOG_LEVEL: 'trace', WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' },
    sandbox: { apiKey: elkapiKey },
    gateway: { clients, logger: { level: 'trace', stream } },
  });
  return { gw, lines };
}

t.test('an ElkAPI key of another shape echoed by the upstream never reaches a 422, a failure message or a webhook', async (t) => {
  const { gw, lines } = await gatewayWithOddKeys(t);
  const receiver = await startScriptedServer();
  t.teardown(() => receiver.close());
  receiver.respond((_request, response) => sendText(response, 200, 'ok'));

  gw.sandbox.injectFault({
    op: 'create',
    status: 422,
    body: { detail: `Prompt refused for account ${elkapiKey}: policy violation` },
  });
  const refused = await gw.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: { prompt: 'A tiger in snow' } });
  t.equal(refused.statusCode, 422);
  t.match(refused.json(), { code: 'upstream_rejected', detail: /Prompt refused for account \[redacted\]: policy violation/ });

  const created = await gw.app.inject({
    method: 'POST',
    url: '/videos',
    headers: auth(),
    payload: { prompt: 'A tiger in snow', callbackUrl: `${receiver.url}/hooks` },
  });
  const { id } = created.json<Video>();
  gw.sandbox.setTaskState(await upstreamIdOf(gw, id), { state: 'failed', failureReason: `Quota exhausted for key ${elkapiKey}` });
  await advanceAndPoll(gw, 3_000);
  await gw.dispatcher.tick();

  const read = await gw.app.inject({ method: 'GET', url: `/videos/${id}`, headers: auth() });
  t.match(read.json<Video>(), { status: 'failed', failure: { code: 'upstream_failed', message: 'Quota exhausted for key [redacted]' } });
  t.equal(receiver.requests.length, 1, 'the failure webhook was sent');
  const event = JSON.parse(receiver.requests[0]?.body ?? '{}') as WebhookEvent;
  t.equal(event.data.failure?.message, 'Quota exhausted for key [redacted]');

  for (const text of [refused.body, read.body, ...receiver.requests.map((request) => request.body), ...lines]) {
    t.notOk(text.includes(elkapiKey), 'the key appears nowhere');
  }
});

t.test('a client key of any shape sent as x-request-id or in the query is never echoed or logged', async (t) => {
  const { gw, lines } = await gatewayWithOddKeys(t);
  const answers: string[] = [];
  for (const key of [carolKey, daveKey]) {
    const asRequestId = await gw.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': key } });
    t.not(asRequestId.headers['x-request-id'], key, 'the request id is replaced');
    answers.push(JSON.stringify(asRequestId.headers), asRequestId.body);
    for (const url of [`/videos?api_key=${key}`, `/videos?q=${key}`, `/nowhere?${key}`]) {
      const response = await gw.app.inject({ method: 'GET', url, headers: auth() });
      t.ok(response.statusCode < 500, `${url.slice(0, 16)}… is answered`);
      answers.push(JSON.stringify(response.headers), response.body);
    }
  }
  const ordinary = await gw.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'mobile-77' } });
  t.equal(ordinary.headers['x-request-id'], 'mobile-77', 'ordinary ids are still echoed');

  t.ok(
    lines.some((line) => line.includes('/videos?api_key=[redacted]')),
    'the URL is logged, redacted',
  );
  t.ok(
    lines.some((line) => line.includes('/videos?q=[redacted]')),
    'a bare key in any parameter too',
  );
  for (const text of [...answers, ...lines]) {
    t.notOk(text.includes(carolKey) || text.includes(daveKey), 'no key appears');
  }
});
