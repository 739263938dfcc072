import type { InjectOptions } from 'fastify';
import t from 'tap';

import type { Problem } from '../schemas/problem.js';
import { auth, createVideo, startTestGateway } from './helpers/gateway.js';

const problemType = 'application/problem+json; charset=utf-8';

t.test('every error is an RFC 9457 problem with code, requestId and x-request-id', async (t) => {
  const gw = await startTestGateway(t);
  const { app } = gw;

  const cases: Array<{ name: string; request: InjectOptions; status: number; code: string }> = [
    { name: 'unknown route', request: { method: 'GET', url: '/nope' }, status: 404, code: 'not_found' },
    {
      name: 'malformed JSON',
      request: { method: 'POST', url: '/videos', headers: { ...auth(), 'content-type': 'application/json' }, payload: '{"prompt": "abc",' },
      status: 400,
      code: 'validation_failed',
    },
    {
      name: 'non-JSON body',
      request: { method: 'POST', url: '/videos', headers: { ...auth(), 'content-type': 'text/plain' }, payload: 'make me a video' },
      status: 415,
      code: 'unsupported_media_type',
    },
    {
      name: 'body over 64 KiB',
      request: { method: 'POST', url: '/videos', headers: auth(), payload: { prompt: 'x'.repeat(70_000) } },
      status: 413,
      code: 'payload_too_large',
    },
    {
      name: 'empty JSON body',
      request: { method: 'POST', url: '/videos', headers: { ...auth(), 'content-type': 'application/json' }, payload: '' },
      status: 400,
      code: 'validation_failed',
    },
  ];
  for (const { name, request, status, code } of cases) {
    const response = await app.inject(request);
    t.equal(response.statusCode, status, name);
    t.equal(response.headers['content-type'], problemType, `${name}: problem content type`);
    const body = response.json<Problem>();
    t.equal(body.code, code, `${name}: code`);
    t.equal(body.status, status);
    t.equal(body.type, `urn:problem:video-gateway:${code}`);
    t.type(body.title, 'string');
    t.type(body.detail, 'string');
    t.equal(body.requestId, response.headers['x-request-id'], `${name}: requestId matches the header`);
    t.notMatch(response.body, /at .*\.(ts|js):\d+/, `${name}: no stack trace`);
  }
  t.equal(gw.sandbox.stats.creates, 0);
});

t.test('validation failures list every field with a JSON pointer', async (t) => {
  const gw = await startTestGateway(t);
  const response = await gw.app.inject({
    method: 'POST',
    url: '/videos',
    headers: auth(),
    payload: { prompt: 'hi', aspectRatio: '2:1', loop: 'yes', aspect_ratio: '16:9', metadata: { a: 5 } },
  });
  t.equal(response.statusCode, 400);
  const body = response.json<Problem>();
  t.equal(body.code, 'validation_failed');
  const errors = body.errors ?? [];
  const paths = errors.map((error) => error.path);
  for (const path of ['/body/prompt', '/body/aspectRatio', '/body/loop', '/body/aspect_ratio', '/body/metadata/a']) {
    t.ok(paths.includes(path), `reports ${path}`);
  }
  t.ok(errors.find((error) => error.path === '/body/aspect_ratio')?.message.includes('not a known field'));
});

t.test('types are not coerced in bodies: a number is not a prompt', async (t) => {
  const gw = await startTestGateway(t);
  const response = await gw.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: { prompt: 12345 } });
  t.equal(response.statusCode, 400);
  t.equal(gw.sandbox.stats.creates, 0);
});

t.test('x-request-id is echoed when given and generated otherwise', async (t) => {
  const gw = await startTestGateway(t);
  const echoed = await gw.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'mobile-1234' } });
  t.equal(echoed.headers['x-request-id'], 'mobile-1234');
  const generated = await gw.app.inject({ method: 'GET', url: '/healthz' });
  t.match(generated.headers['x-request-id'], /^req_[0-9A-Z]{26}$/);
  const hostile = await gw.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'x'.repeat(500) } });
  t.match(hostile.headers['x-request-id'], /^req_/, 'an unreasonable id is replaced');
  const created = await gw.app.inject({
    method: 'POST',
    url: '/videos',
    headers: { ...auth(), 'x-request-id': 'abc-1' },
    payload: { prompt: 'hello world' },
  });
  t.equal(created.headers['x-request-id'], 'abc-1');
});

t.test('upstream refusals map to problems and store nothing', async (t) => {
  const gw = await startTestGateway(t);
  const cases = [
    { fault: null, prompt: 'Something the moderation refuses [moderate]', status: 422, code: 'upstream_rejected', detail: /moderation/ },
    {
      fault: { op: 'create' as const, status: 401, body: { error: { message: 'Invalid token (request id: 123)', type: 'new_api_error' } } },
      status: 503,
      code: 'upstream_unavailable',
    },
    {
      fault: { op: 'create' as const, status: 403, body: { error: { message: 'quota exhausted' } } },
      status: 503,
      code: 'upstream_unavailable',
    },
    {
      fault: { op: 'create' as const, status: 429, headers: { 'retry-after': '7' }, body: { error: { message: 'slow down' } } },
      status: 503,
      code: 'upstream_unavailable',
      retryAfter: '7',
    },
    { fault: { op: 'create' as const, html: true, status: 502 }, status: 502, code: 'upstream_unavailable' },
    { fault: { op: 'create' as const, destroySocket: true }, status: 502, code: 'upstream_unavailable' },
  ];
  for (const testCase of cases) {
    if (testCase.fault !== null) gw.sandbox.injectFault(testCase.fault);
    const response = await gw.app.inject({
      method: 'POST',
      url: '/videos',
      headers: auth(),
      payload: { prompt: testCase.prompt ?? 'A calm sea' },
    });
    t.equal(response.statusCode, testCase.status, testCase.code);
    t.equal(response.json().code, testCase.code);
    if (testCase.detail) t.match(response.json().detail, testCase.detail);
    if (testCase.retryAfter) t.equal(response.headers['retry-after'], testCase.retryAfter);
    t.notMatch(response.body, /<|elk-test-key|Invalid token/, 'no HTML, no key, no upstream auth message');
  }
  // Only the successful create below is stored.
  const created = await createVideo(gw);
  t.equal(created.status, 'queued');
  const readiness = await gw.app.inject({ method: 'GET', url: '/readyz' });
  t.equal(readiness.statusCode, 200, 'a later success clears the auth failure');
});

t.test('an upstream that answers slower than the timeout gives 504 upstream_timeout', async (t) => {
  const gw = await startTestGateway(t, { upstreamTimeoutMs: 100 });
  gw.sandbox.injectFault({ op: 'create', delayMs: 400 });
  const response = await gw.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: { prompt: 'A slow answer' } });
  t.equal(response.statusCode, 504);
  t.equal(response.json().code, 'upstream_timeout');
});
