import { Webhook } from 'standardwebhooks';
import t from 'tap';

import type { WebhookEvent } from '../schemas/deliveries.js';
import { createClientRegistry } from '../src/auth/clients.js';
import { ValidationFailed } from '../src/errors.js';
import { toProblem } from '../src/http/problems.js';
import { parseRetryAfter } from '../src/lib/retry-after.js';
import type { VideoRecord } from '../src/store/records.js';
import { toWebhookSummary } from '../src/videos/present.js';
import { createCallbackUrlValidator } from '../src/webhooks/callback-policy.js';
import { describeNetworkError } from '../src/webhooks/dispatcher.js';
import { classifyResponse } from '../src/webhooks/outcome.js';
import { buildWebhookPayload, signWebhook } from '../src/webhooks/payload.js';
import { MAX_RETRY_AFTER_MS, nextAttemptAt } from '../src/webhooks/schedule.js';
import { ForbiddenAddressError, UNREACHABLE_HOST_MESSAGE } from '../src/webhooks/ssrf.js';
import { testClientsFile, webhookSecrets } from './helpers/gateway.js';
import { videoRequest } from './helpers/records.js';

const now = Date.parse('2026-11-29T12:00:00.000Z');
const schedule = [5_000, 300_000, 1_800_000];
const middle = () => 0.5;

// ---------------------------------------------------------------------------------------------------------------
// Retry schedule
// ---------------------------------------------------------------------------------------------------------------

t.test('each failed attempt waits for its step of the schedule; none is left after the last', async (t) => {
  const at = (failedAttempts: number, random = middle) =>
    nextAttemptAt({ now, failedAttempts, scheduleMs: schedule, retryAfterMs: null, random });
  t.same(
    [1, 2, 3].map((failed) => at(failed)),
    [now + 5_000, now + 300_000, now + 1_800_000],
  );
  t.equal(at(4), null, 'schedule used up: the delivery fails');
  t.equal(at(0), null, 'nonsense input schedules nothing');
});

t.test('jitter spreads a step by ±20 %, never more', async (t) => {
  const jittered = (random: number) =>
    nextAttemptAt({ now, failedAttempts: 2, scheduleMs: schedule, retryAfterMs: null, random: () => random });
  t.equal(jittered(0), now + 240_000, '-20 %');
  t.equal(jittered(0.999_999), now + 360_000, '+20 %');
  const delays = Array.from({ length: 500 }, () => (jittered(Math.random()) ?? 0) - now);
  t.ok(Math.min(...delays) >= 240_000 && Math.max(...delays) <= 360_000, 'random draws stay within ±20 %');
  t.ok(new Set(delays).size > 100, 'and do spread');
});

t.test('Retry-After is honoured when it asks for later than the schedule, and capped at a day', async (t) => {
  const at = (retryAfterMs: number | null) => nextAttemptAt({ now, failedAttempts: 1, scheduleMs: schedule, retryAfterMs, random: middle });
  t.equal(at(60_000), now + 60_000, 'later than the 5 s step: honoured');
  t.equal(at(1_000), now + 5_000, 'sooner than the step: the schedule wins');
  t.equal(at(30 * 24 * 3600_000), now + MAX_RETRY_AFTER_MS, 'a month is capped at a day');
  t.equal(
    nextAttemptAt({ now, failedAttempts: 4, scheduleMs: schedule, retryAfterMs: 1_000, random: middle }),
    null,
    'no retry past the schedule, Retry-After or not',
  );
});

t.test('Retry-After parses delay-seconds and HTTP-dates, and nothing else', async (t) => {
  t.equal(parseRetryAfter('120', now), 120_000);
  t.equal(parseRetryAfter(' 0 ', now), 0);
  t.equal(parseRetryAfter(new Date(now + 90_000).toUTCString(), now), 90_000);
  t.equal(parseRetryAfter(new Date(now - 90_000).toUTCString(), now), 0, 'a date in the past means now');
  t.equal(parseRetryAfter(['30', '60'], now), 30_000, 'the first of repeated headers');
  for (const junk of [undefined, '', 'soon', '-5', '1.5', '2026-11-29', 'Sun, 29 Nov 2026 12:00:00 PST']) {
    t.equal(parseRetryAfter(junk, now), null, `unreadable: ${String(junk)}`);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Outcome of one attempt
// ---------------------------------------------------------------------------------------------------------------

t.test('2xx delivers; 410 stops; 3xx, 4xx and 5xx retry; Retry-After counts on 429 and 503 only', async (t) => {
  for (const status of [200, 201, 202, 204, 299]) t.same(classifyResponse(status, {}, now), { kind: 'delivered' }, `${status}`);
  t.match(classifyResponse(410, {}, now), { kind: 'stop', error: /410 Gone/ });
  t.same(classifyResponse(301, { location: 'https://elsewhere.example/hook' }, now), {
    kind: 'retry',
    retryAfterMs: null,
    error: 'redirects are not followed (to https://elsewhere.example/hook)',
  });
  t.match(classifyResponse(308, {}, now), { kind: 'retry', error: 'redirects are not followed' });
  for (const status of [400, 401, 404, 408, 500, 502, 504]) {
    t.same(
      classifyResponse(status, { retryAfter: '60' }, now),
      { kind: 'retry', retryAfterMs: null, error: null },
      `${status} ignores Retry-After`,
    );
  }
  t.same(classifyResponse(429, { retryAfter: '60' }, now), { kind: 'retry', retryAfterMs: 60_000, error: null });
  t.same(classifyResponse(503, { retryAfter: '7' }, now), { kind: 'retry', retryAfterMs: 7_000, error: null });
  t.same(classifyResponse(503, {}, now), { kind: 'retry', retryAfterMs: null, error: null });
});

t.test('network failures are described briefly; a refused address is never named, and reads like an unknown name', async (t) => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
  t.equal(describeNetworkError(refused), 'connection refused (ECONNREFUSED)');
  const forbidden = new ForbiddenAddressError('db.internal', '10.20.30.40', UNREACHABLE_HOST_MESSAGE);
  t.equal(describeNetworkError(forbidden), 'callback host does not resolve to an allowed address');
  t.equal(describeNetworkError(new Error('wrapped', { cause: forbidden })), forbidden.message, 'found through `cause`');
  const unknown = Object.assign(new Error('getaddrinfo ENOTFOUND nothing.internal'), { code: 'ENOTFOUND' });
  t.equal(describeNetworkError(unknown), describeNetworkError(forbidden), 'an unknown name says the same');
  t.notMatch(describeNetworkError(unknown), /nothing\.internal|ENOTFOUND/);
  t.equal(describeNetworkError(new Error('x'.repeat(2000))).length, 500, 'long messages are cut');
});

// ---------------------------------------------------------------------------------------------------------------
// Payload and signature
// ---------------------------------------------------------------------------------------------------------------

const video: VideoRecord = {
  id: 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC',
  clientId: 'alice',
  upstreamId: 'c1b5a2f4-9d7e-4e51-a3f0-5b8f2d7e9a11',
  status: 'failed',
  upstreamState: 'failed',
  request: videoRequest({ prompt: 'A tiger', callbackUrl: 'https://hooks.example.com/videos', metadata: { userId: 'u_42' } }),
  estimatedWaitSeconds: null,
  result: null,
  failure: { code: 'upstream_failed', message: 'moderation' },
  createdAt: now - 10_000,
  updatedAt: now,
  completedAt: now,
  nextPollAt: null,
  pollAttempts: 4,
  notFoundSince: null,
  leaseUntil: null,
  version: 1,
  webhook: { status: 'retrying', attempts: 2, lastAttemptAt: null, nextAttemptAt: null, lastResponseStatus: 500 },
};

t.test('the body is { type, timestamp, data: Video } without the upstream id or the webhook summary', async (t) => {
  const body = buildWebhookPayload('video.failed', now, video);
  const parsed = JSON.parse(body) as WebhookEvent;
  t.same(Object.keys(parsed), ['type', 'timestamp', 'data']);
  t.equal(parsed.type, 'video.failed');
  t.equal(parsed.timestamp, '2026-11-29T12:00:00.000Z');
  t.match(parsed.data, { id: video.id, status: 'failed', failure: video.failure, metadata: { userId: 'u_42' }, webhook: null });
  t.notMatch(body, video.upstreamId);
  t.equal(buildWebhookPayload('video.failed', now, video), body, 'deterministic');
});

t.test('signatures verify with standardwebhooks; the id is the event, the timestamp the attempt', async (t) => {
  const attemptAt = Date.now();
  const body = buildWebhookPayload('video.failed', now, video);
  const headers = signWebhook(webhookSecrets.alice, 'msg_01JDXYZ', attemptAt, body);
  t.equal(headers['content-type'], 'application/json');
  t.equal(headers['webhook-id'], 'msg_01JDXYZ');
  t.equal(headers['webhook-timestamp'], String(Math.floor(attemptAt / 1000)));
  t.match(headers['webhook-signature'], /^v1,[A-Za-z0-9+/]+=*$/);
  t.same(new Webhook(webhookSecrets.alice).verify(body, { ...headers }), JSON.parse(body));
  t.throws(() => new Webhook(webhookSecrets.bob).verify(body, { ...headers }), 'another client’s secret does not verify');
  t.throws(
    () => new Webhook(webhookSecrets.alice).verify(body.replace('failed', 'completed'), { ...headers }),
    'a changed body does not verify',
  );
  const later = signWebhook(webhookSecrets.alice, 'msg_01JDXYZ', attemptAt + 60_000, body);
  t.not(later['webhook-signature'], headers['webhook-signature'], 'a later attempt signs a new timestamp');
  t.notMatch(JSON.stringify(headers), webhookSecrets.alice.slice(6), 'the secret is never sent');
});

// ---------------------------------------------------------------------------------------------------------------
// Summary and request-time policy
// ---------------------------------------------------------------------------------------------------------------

t.test('the webhook summary maps the stored delivery state to the public shape', async (t) => {
  const state = { status: 'retrying' as const, attempts: 2, lastAttemptAt: now, nextAttemptAt: now + 5_000, lastResponseStatus: 500 };
  t.same(toWebhookSummary(state), {
    status: 'retrying',
    attempts: 2,
    lastAttemptAt: '2026-11-29T12:00:00.000Z',
    nextAttemptAt: '2026-11-29T12:00:05.000Z',
    lastResponseStatus: 500,
  });
  t.equal(toWebhookSummary({ ...state, status: 'delivered', nextAttemptAt: null, lastResponseStatus: 204 }).nextAttemptAt, null);
  t.equal(toWebhookSummary({ ...state, status: 'failed' }).nextAttemptAt, null, 'nothing is due once failed');
  t.equal(toWebhookSummary({ ...state, status: 'delivering', attempts: 0 }).status, 'pending');
  t.equal(toWebhookSummary({ ...state, status: 'delivering', attempts: 3 }).status, 'retrying');
});

t.test('the request-time validator returns the normalised URL or a 400 naming callbackUrl', async (t) => {
  const registry = createClientRegistry({
    clients: [
      ...testClientsFile.clients,
      { ...testClientsFile.clients[0]!, id: 'partner', apiKeySha256: 'a'.repeat(64), allowedCallbackHosts: ['hooks.partner.example'] },
    ],
  });
  const alice = registry.get('alice')!;
  const partner = registry.get('partner')!;
  const strict = createCallbackUrlValidator({ allowHttp: false, allowPrivateNetworks: false });
  t.equal(strict('https://Hooks.Example.COM:443/v1/videos?x=1', alice), 'https://hooks.example.com/v1/videos?x=1');

  const refusal = (fn: () => unknown): ValidationFailed => {
    try {
      fn();
    } catch (error) {
      if (error instanceof ValidationFailed) return error;
      throw error;
    }
    throw new Error('expected a refusal');
  };
  for (const [url, reason] of [
    ['http://hooks.example.com/x', 'must use https'],
    ['https://10.0.0.5/x', 'points to a private or reserved address'],
    ['https://user:pw@hooks.example.com/x', 'must not contain credentials'],
    ['https://metadata.google.internal/x', 'points to a local or internal host name'],
    ['/relative', 'must be an absolute URL'],
  ] as const) {
    const refused = refusal(() => strict(url, alice));
    t.equal(refused.code, 'validation_failed', url);
    t.equal(toProblem(refused).status, 400);
    t.same(refused.fieldErrors, [{ path: '/body/callbackUrl', message: reason }]);
  }
  t.same(refusal(() => strict('https://hooks.example.com/x', partner)).fieldErrors, [
    { path: '/body/callbackUrl', message: "host is not in this client's allowedCallbackHosts" },
  ]);
  t.equal(strict('https://hooks.partner.example/x', partner), 'https://hooks.partner.example/x');

  const local = createCallbackUrlValidator({ allowHttp: true, allowPrivateNetworks: true });
  t.equal(local('http://127.0.0.1:8080/hook', alice), 'http://127.0.0.1:8080/hook', 'both switches: local receivers');
});
