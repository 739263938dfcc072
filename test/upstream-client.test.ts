import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';

import t, { type Test } from 'tap';
import { MockAgent } from 'undici';

import { backoffDelayMs, createUpstreamClient, isRetryable, type UpstreamClientOptions } from '../src/upstream/client.js';
import { SAFE_MESSAGES } from '../src/upstream/failures.js';
import { RateBudget } from '../src/upstream/rate-budget.js';
import { type UpstreamCreateRequest, UpstreamError } from '../src/upstream/types.js';
import { ManualClock } from './helpers/manual-time.js';
import { upstreamRejection } from './helpers/rejection.js';
import { inSequence, type ScriptedHandler, sendJson, sendText, startScriptedServer } from './helpers/scripted-server.js';

const API_KEY = 'sk-elk-TEST-9f8e7d6c5b4a3f2e1d0c';
const GENERATIONS = '/dream-machine/v1/generations';
const fixturesDir = new URL('./fixtures/upstream/', import.meta.url);
const fixture = (name: string): unknown => JSON.parse(readFileSync(new URL(name, fixturesDir), 'utf8')) as unknown;

const createRequest: UpstreamCreateRequest = {
  prompt: 'A serene lake surrounded by mountains at sunset',
  aspect_ratio: '16:9',
  loop: true,
};

const json =
  (status: number, body: unknown, headers: Record<string, string> = {}): ScriptedHandler =>
  (_request, response) =>
    sendJson(response, status, body, headers);
const text =
  (status: number, body: string, contentType = 'text/html'): ScriptedHandler =>
  (_request, response) =>
    sendText(response, status, body, { 'content-type': contentType });
const neverAnswer: ScriptedHandler = () => undefined;

const HTML_502 =
  '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n';

/** A client against a fresh scripted server, with recording sleep, logger and metrics hook. */
async function setup(t: Test, overrides: Partial<UpstreamClientOptions> = {}) {
  const server = await startScriptedServer();
  const sleeps: number[] = [];
  const logLines: string[] = [];
  const calls: Array<{ op: string; outcome: string; durationMs: number }> = [];
  const record = (level: string) => (obj: object, msg: string) => {
    logLines.push(`${level} ${msg} ${inspect(obj, { depth: 5 })}`);
  };
  const client = createUpstreamClient({
    baseUrl: server.url,
    apiKey: API_KEY,
    maxRps: 0,
    random: () => 0.5,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    logger: { debug: record('debug'), warn: record('warn'), error: record('error') },
    onCall: (op, outcome, durationMs) => calls.push({ op, outcome, durationMs }),
    ...overrides,
  });
  t.teardown(async () => {
    await server.close();
    await client.close();
  });
  return { server, client, sleeps, logLines, calls };
}

/** The key must not hide anywhere in an error: message, safe message, cause chain, inspection. */
function assertNoKey(t: Test, error: UpstreamError, logLines: string[] = []): void {
  t.notOk(error.message.includes(API_KEY), 'not in message');
  t.notOk(error.safeMessage.includes(API_KEY), 'not in safeMessage');
  t.notOk(inspect(error, { depth: 10, showHidden: true }).includes(API_KEY), 'not anywhere in the error object');
  t.notOk(
    logLines.some((line) => line.includes(API_KEY)),
    'not in any log line',
  );
}

t.test('create: 201 official shape parsed; request shape, headers and body as documented', async (t) => {
  const { server, client, calls } = await setup(t);
  server.respond(json(201, fixture('create-201.json')));
  const gen = await client.createGeneration(createRequest);
  t.equal(gen.upstreamId, '7ca76429-99d1-46ab-bb2e-84baa4acdb04');
  t.equal(gen.status, 'queued');
  t.equal(server.requests.length, 1);
  const [request] = server.requests;
  t.equal(request?.method, 'POST');
  t.equal(request?.url, GENERATIONS);
  t.equal(request?.headers.authorization, `Bearer ${API_KEY}`);
  t.equal(request?.headers.accept, 'application/json');
  t.equal(request?.headers['content-type'], 'application/json');
  t.same(JSON.parse(request?.body ?? ''), createRequest);
  t.same(
    calls.map(({ op, outcome }) => [op, outcome]),
    [['create', 'ok']],
  );
  t.ok((calls[0]?.durationMs ?? -1) >= 0);
});

t.test('create: a 500 is never retried', async (t) => {
  const { server, client, sleeps } = await setup(t);
  server.respond(json(500, { error: { message: 'boom' } }));
  const error = await upstreamRejection(client.createGeneration(createRequest));
  t.equal(error.kind, 'unavailable');
  t.equal(error.httpStatus, 500);
  t.equal(server.requests.length, 1, 'exactly one request');
  t.same(sleeps, []);
});

t.test('create: a timeout is never retried either', async (t) => {
  const { server, client } = await setup(t, { timeoutMs: 100 });
  server.respond(neverAnswer);
  const error = await upstreamRejection(client.createGeneration(createRequest));
  t.equal(error.kind, 'timeout');
  t.equal(server.requests.length, 1);
});

t.test('create: 422 moderation refusal → rejected with the sanitised upstream message', async (t) => {
  const { server, client } = await setup(t);
  server.respond(json(422, { detail: 'Prompt flagged by moderation (request id: abc123)' }));
  const error = await upstreamRejection(client.createGeneration(createRequest));
  t.equal(error.kind, 'rejected');
  t.equal(error.safeMessage, 'Prompt flagged by moderation');
});

t.test('query: a 5xx burst then 200 is retried with backoff and succeeds', async (t) => {
  const { server, client, sleeps, calls, logLines } = await setup(t);
  server.respond(
    inSequence(
      json(503, { error: { message: 'overloaded' } }),
      text(502, HTML_502),
      json(524, {}),
      json(200, fixture('query-completed.json')),
    ),
  );
  const gen = await client.getGeneration('f8ec5bf5-a860-420e-b663-5a478e0d5301');
  t.equal(gen.status, 'completed');
  t.equal(server.requests.length, 4, 'three failures + one success');
  t.ok(server.requests.every((request) => request.method === 'GET'));
  t.equal(server.requests[0]?.url, `${GENERATIONS}/f8ec5bf5-a860-420e-b663-5a478e0d5301`);
  t.same(sleeps, [125, 250, 500], 'full jitter (random 0.5) over 250 · 2^n');
  t.same(
    calls.map(({ outcome }) => outcome),
    ['unavailable', 'unavailable', 'unavailable', 'ok'],
    'one onCall per attempt',
  );
  t.equal(logLines.filter((line) => line.startsWith('warn retrying upstream query')).length, 3);
});

t.test('query: gives up after maxRetries', async (t) => {
  const { server, client, sleeps } = await setup(t, { maxRetries: 2 });
  server.respond(json(503, {}));
  const error = await upstreamRejection(client.getGeneration('abc'));
  t.equal(error.kind, 'unavailable');
  t.equal(server.requests.length, 3);
  t.equal(sleeps.length, 2);
});

t.test('query: the id is URL-encoded; a base URL path prefix is kept', async (t) => {
  const server = await startScriptedServer();
  const client = createUpstreamClient({ baseUrl: `${server.url}/relay/`, apiKey: API_KEY, maxRps: 0 });
  t.teardown(async () => {
    await server.close();
    await client.close();
  });
  server.respond(json(200, fixture('query-running.json')));
  await client.getGeneration('a/b c?d');
  t.equal(server.requests[0]?.url, `/relay${GENERATIONS}/a%2Fb%20c%3Fd`);
  const error = await upstreamRejection(client.getGeneration('  '));
  t.equal(error.kind, 'not_found', 'an empty id is never sent');
  t.equal(server.requests.length, 1);
});

t.test('query: 429 with Retry-After: 2 waits at least 2000 ms, then succeeds', async (t) => {
  const { server, client, sleeps } = await setup(t);
  server.respond(inSequence(json(429, fixture('error-429.json'), { 'retry-after': '2' }), json(200, fixture('query-running.json'))));
  const gen = await client.getGeneration('7ca76429-99d1-46ab-bb2e-84baa4acdb04');
  t.equal(gen.status, 'processing');
  t.equal(server.requests.length, 2);
  t.equal(sleeps.length, 1);
  t.ok((sleeps[0] ?? 0) >= 2000, `slept ${sleeps[0]} ms`);
});

t.test('query: a Retry-After longer than maxRetryAfterMs is handed back to the caller', async (t) => {
  const { server, client, sleeps } = await setup(t);
  server.respond(json(429, fixture('error-429.json'), { 'retry-after': '60' }));
  const error = await upstreamRejection(client.getGeneration('x'));
  t.equal(error.kind, 'rate_limited');
  t.equal(error.retryAfterMs, 60_000);
  t.equal(server.requests.length, 1);
  t.same(sleeps, []);
});

t.test('query: no headers within timeoutMs → timeout, retried', async (t) => {
  const { server, client, sleeps, calls } = await setup(t, { timeoutMs: 100, maxRetries: 1 });
  server.respond(neverAnswer);
  const error = await upstreamRejection(client.getGeneration('slow'));
  t.equal(error.kind, 'timeout');
  t.equal(error.safeMessage, SAFE_MESSAGES.timeout);
  t.equal(server.requests.length, 2, 'timeouts are transient: retried');
  t.equal(sleeps.length, 1);
  t.same(
    calls.map(({ outcome }) => outcome),
    ['timeout', 'timeout'],
  );
});

t.test('query: a body that stalls past timeoutMs → timeout', async (t) => {
  const { server, client } = await setup(t, { timeoutMs: 100, maxRetries: 0 });
  server.respond((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.write('{"id":"x","sta');
  });
  const error = await upstreamRejection(client.getGeneration('stall'));
  t.equal(error.kind, 'timeout');
});

t.test('query: malformed JSON on 200 → unavailable, not retried', async (t) => {
  const { server, client, sleeps } = await setup(t);
  server.respond(text(200, '{"id": "abc", "state": ', 'application/json'));
  const error = await upstreamRejection(client.getGeneration('abc'));
  t.equal(error.kind, 'unavailable');
  t.equal(error.httpStatus, 200);
  t.equal(error.safeMessage, SAFE_MESSAGES.unexpectedPayload);
  t.equal(server.requests.length, 1);
  t.same(sleeps, []);
});

t.test('query: 200 with JSON but no id, or an empty body → unavailable', async (t) => {
  const { server, client } = await setup(t);
  server.respond(inSequence(json(200, { state: 'completed' }), text(200, '', 'application/json'), json(200, [1, 2])));
  for (let i = 0; i < 3; i++) {
    const error = await upstreamRejection(client.getGeneration('abc'));
    t.equal(error.kind, 'unavailable');
    t.equal(error.httpStatus, 200);
  }
});

t.test('query: an HTML 502 page → unavailable, and no HTML in the message', async (t) => {
  const { server, client } = await setup(t, { maxRetries: 0 });
  server.respond(text(502, HTML_502));
  const error = await upstreamRejection(client.getGeneration('abc'));
  t.equal(error.kind, 'unavailable');
  t.equal(error.httpStatus, 502);
  t.notMatch(error.safeMessage, /</);
  t.notMatch(error.message, /</);
});

t.test('query: an HTML 400 page → rejected with a generic message', async (t) => {
  const { server, client } = await setup(t);
  server.respond(text(400, '<html><body><h1>400 Bad Request</h1></body></html>'));
  const error = await upstreamRejection(client.getGeneration('abc'));
  t.equal(error.kind, 'rejected');
  t.equal(error.safeMessage, SAFE_MESSAGES.rejected);
  t.equal(server.requests.length, 1);
});

t.test('query: task_not_exist 400 → not_found, not retried', async (t) => {
  const { server, client, sleeps } = await setup(t);
  server.respond(json(400, fixture('error-task-not-exist-400.json')));
  const error = await upstreamRejection(client.getGeneration('unknown-id'));
  t.equal(error.kind, 'not_found');
  t.equal(error.httpStatus, 400);
  t.equal(server.requests.length, 1);
  t.same(sleeps, []);
});

t.test('query: task_not_exist wrapped in a 200 → not_found', async (t) => {
  const { server, client } = await setup(t);
  server.respond(json(200, fixture('error-task-not-exist-400.json')));
  const error = await upstreamRejection(client.getGeneration('unknown-id'));
  t.equal(error.kind, 'not_found');
});

for (const status of [401, 403]) {
  t.test(`query: ${status} → auth, not retried, logged loudly, key nowhere`, async (t) => {
    const { server, client, sleeps, logLines } = await setup(t);
    server.respond(json(status, { error: { message: `Invalid token ${API_KEY} (request id: 1)` } }));
    const error = await upstreamRejection(client.getGeneration('abc'));
    t.equal(error.kind, 'auth');
    t.equal(error.safeMessage, 'The gateway could not authenticate with the upstream');
    t.equal(server.requests.length, 1);
    t.same(sleeps, []);
    t.ok(logLines.some((line) => line.startsWith('error ElkAPI refused the gateway key')));
    assertNoKey(t, error, logLines);
  });
}

t.test('the upstream sees Bearer <key>; no error or log line ever carries the key', async (t) => {
  const { server, client, logLines } = await setup(t, { timeoutMs: 100, maxRetries: 1 });
  const errors: UpstreamError[] = [];
  const scripted: ScriptedHandler[] = [
    json(500, {}),
    json(500, {}),
    json(400, { error: { message: 'bad', param: API_KEY } }),
    json(429, {}, { 'retry-after': '120' }),
    text(502, HTML_502),
    text(502, HTML_502),
    neverAnswer,
    neverAnswer,
  ];
  server.respond(inSequence(...scripted));
  errors.push(await upstreamRejection(client.getGeneration('a')));
  errors.push(await upstreamRejection(client.getGeneration('b')));
  errors.push(await upstreamRejection(client.getGeneration('c')));
  errors.push(await upstreamRejection(client.getGeneration('d')));
  errors.push(await upstreamRejection(client.getGeneration('e')));
  t.same(
    errors.map((error) => error.kind),
    ['unavailable', 'rejected', 'rate_limited', 'unavailable', 'timeout'],
  );
  t.ok(server.requests.length > 0);
  for (const request of server.requests) t.equal(request.headers.authorization, `Bearer ${API_KEY}`);
  for (const error of errors) assertNoKey(t, error, logLines);
});

t.test('connection refused → unavailable, retried', async (t) => {
  const server = await startScriptedServer();
  const baseUrl = server.url;
  await server.close();
  const sleeps: number[] = [];
  const client = createUpstreamClient({
    baseUrl,
    apiKey: API_KEY,
    maxRps: 0,
    maxRetries: 2,
    random: () => 0,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  });
  t.teardown(() => client.close());
  const error = await upstreamRejection(client.getGeneration('abc'));
  t.equal(error.kind, 'unavailable');
  t.equal(error.httpStatus, null);
  t.equal(error.safeMessage, SAFE_MESSAGES.unreachable);
  t.same(sleeps, [0, 0]);
  assertNoKey(t, error);
});

t.test('sockets are reused after error answers (bodies are consumed)', async (t) => {
  // One connection: an unread body would stall the next request, a destroyed socket would show a new port.
  const { server, client } = await setup(t, { maxRetries: 0, connections: 1 });
  server.respond(
    inSequence(
      json(400, fixture('error-task-not-exist-400.json')),
      json(503, { error: { message: 'x'.repeat(10_000) } }),
      text(502, HTML_502),
      json(200, fixture('query-running.json')),
    ),
  );
  for (let i = 0; i < 3; i++) await upstreamRejection(client.getGeneration('abc'));
  await client.getGeneration('abc');
  const ports = new Set(server.requests.map((request) => request.remotePort));
  t.equal(server.requests.length, 4);
  t.equal(ports.size, 1, 'one connection served every request');
});

t.test('an answer larger than maxResponseBytes → unavailable', async (t) => {
  const { server, client } = await setup(t, { maxResponseBytes: 512 });
  server.respond(json(200, { ...(fixture('query-completed.json') as object), padding: 'x'.repeat(2048) }));
  const error = await upstreamRejection(client.getGeneration('abc'));
  t.equal(error.kind, 'unavailable');
  t.equal(error.httpStatus, 200);
});

t.test('a throwing onCall hook does not break a call', async (t) => {
  const { server, client, logLines } = await setup(t, {
    onCall: () => {
      throw new Error('metrics down');
    },
  });
  server.respond(json(200, fixture('query-running.json')));
  const gen = await client.getGeneration('abc');
  t.equal(gen.status, 'processing');
  t.ok(logLines.some((line) => line.startsWith('warn upstream onCall hook threw')));
});

t.test('the rate budget paces calls toward the upstream', async (t) => {
  const clock = new ManualClock();
  const sleeps: number[] = [];
  const { server, client } = await setup(t, {
    maxRps: 2,
    clock,
    sleep: async (ms) => {
      sleeps.push(ms);
      clock.advance(ms);
    },
  });
  server.respond(json(200, fixture('query-running.json')));
  for (let i = 0; i < 4; i++) await client.getGeneration('abc');
  t.same(sleeps, [500, 500], 'burst of 2, then one call every 500 ms');
  t.equal(server.requests.length, 4);
});

t.test('a MockAgent can replace the pool; close() leaves it to its owner', async (t) => {
  const agent = new MockAgent();
  agent.disableNetConnect();
  const origin = 'https://api.elkapi.test';
  agent
    .get(origin)
    .intercept({ path: `${GENERATIONS}/mock-id`, method: 'GET' })
    .reply(200, JSON.stringify(fixture('query-failed.json')), { headers: { 'content-type': 'application/json' } });
  agent
    .get(origin)
    .intercept({ path: `${GENERATIONS}/mock-id`, method: 'GET' })
    .replyWithError(new Error('socket hang up'));
  const client = createUpstreamClient({ baseUrl: origin, apiKey: API_KEY, dispatcher: agent, maxRps: 0, maxRetries: 0 });
  const gen = await client.getGeneration('mock-id');
  t.equal(gen.status, 'failed');
  t.equal(gen.failureReason, 'Advanced prompt moderation failed');
  const error = await upstreamRejection(client.getGeneration('mock-id'));
  t.equal(error.kind, 'unavailable');
  await client.close();
  agent.assertNoPendingInterceptors();
  await agent.close();
});

t.test('backoffDelayMs and isRetryable', async (t) => {
  t.equal(
    backoffDelayMs(0, 250, 5000, () => 0.999),
    249,
  );
  t.equal(
    backoffDelayMs(3, 250, 5000, () => 0.5),
    1000,
  );
  t.equal(
    backoffDelayMs(10, 250, 5000, () => 0.5),
    2500,
    'capped at the maximum',
  );
  t.equal(
    backoffDelayMs(2, 250, 5000, () => 0),
    0,
  );
  const retryable = (kind: UpstreamError['kind'], status: number | null): boolean => isRetryable(new UpstreamError(kind, 'm', status));
  t.ok(retryable('timeout', null));
  t.ok(retryable('rate_limited', 429));
  t.ok(retryable('unavailable', null), 'network');
  t.ok(retryable('unavailable', 503));
  t.ok(retryable('unavailable', 408));
  t.notOk(retryable('unavailable', 200), 'bad payload');
  t.notOk(retryable('unavailable', 404));
  t.notOk(retryable('rejected', 400));
  t.notOk(retryable('not_found', 400));
  t.notOk(retryable('auth', 401));
});

t.test('RateBudget', async (t) => {
  t.test('burst, then a steady pace', async (t) => {
    const clock = new ManualClock();
    const sleeps: number[] = [];
    const budget = new RateBudget({
      ratePerSecond: 2,
      clock,
      sleep: async (ms) => {
        sleeps.push(ms);
        clock.advance(ms);
      },
    });
    for (let i = 0; i < 5; i++) await budget.acquire();
    t.same(sleeps, [500, 500, 500]);
  });

  t.test('concurrent callers queue in arrival order', async (t) => {
    const clock = new ManualClock();
    const sleeps: number[] = [];
    const budget = new RateBudget({
      ratePerSecond: 10,
      burst: 1,
      clock,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    await Promise.all([budget.acquire(), budget.acquire(), budget.acquire(), budget.acquire()]);
    t.same(sleeps, [100, 200, 300]);
  });

  t.test('an idle bucket refills up to its burst only', async (t) => {
    const clock = new ManualClock();
    const budget = new RateBudget({ ratePerSecond: 4, burst: 2, clock, sleep: async () => undefined });
    t.same([budget.reserve(), budget.reserve(), budget.reserve()], [0, 0, 250]);
    clock.advance(60_000);
    t.same([budget.reserve(), budget.reserve(), budget.reserve()], [0, 0, 250]);
  });

  t.test('time refills tokens', async (t) => {
    const clock = new ManualClock();
    const budget = new RateBudget({ ratePerSecond: 1, clock });
    t.equal(budget.reserve(), 0);
    t.equal(budget.reserve(), 1000);
    clock.advance(1500);
    t.equal(budget.reserve(), 500, 'the debt is paid by elapsed time');
  });

  t.test('tryReserve takes a token only when the wait stays within the bound; refused, the debt is unchanged', async (t) => {
    const clock = new ManualClock();
    const budget = new RateBudget({ ratePerSecond: 1, clock });
    t.same(budget.tryReserve(1000), { granted: true, waitMs: 0 });
    t.same(budget.tryReserve(1000), { granted: true, waitMs: 1000 });
    t.same(budget.tryReserve(1000), { granted: false, waitMs: 2000 }, 'would wait 2 s: refused');
    t.same(budget.tryReserve(1000), { granted: false, waitMs: 2000 }, 'the refusal took nothing');
    t.equal(budget.reserve(), 2000, 'an unbounded caller still queues, behind the granted ones only');
    clock.advance(2000);
    t.same(budget.tryReserve(1000), { granted: true, waitMs: 1000 });
  });

  t.test('no limit', async (t) => {
    for (const ratePerSecond of [0, -1, Number.POSITIVE_INFINITY]) {
      const budget = new RateBudget({ ratePerSecond, clock: new ManualClock() });
      t.ok(budget.unlimited);
      t.same(
        Array.from({ length: 100 }, () => budget.reserve()).filter((wait) => wait > 0),
        [],
      );
      t.same(budget.tryReserve(0), { granted: true, waitMs: 0 });
    }
  });
});
