import t, { type Test } from 'tap';

import { type Sandbox, startSandbox } from '../src/sandbox/simulator.js';
import { type CircuitState, withCircuitBreaker } from '../src/upstream/circuit-breaker.js';
import { createUpstreamClient } from '../src/upstream/client.js';
import { createUpstreamHealth, withHealthTracking } from '../src/upstream/health.js';
import type { UpstreamClient, UpstreamCreateRequest } from '../src/upstream/types.js';
import { advanceAndPoll, auth, createVideo, startTestGateway, upstreamIdOf } from './helpers/gateway.js';
import { ManualClock } from './helpers/manual-time.js';
import { upstreamRejection } from './helpers/rejection.js';

const KEY = 'elk-test-key-do-not-leak';
const request: UpstreamCreateRequest = { prompt: 'A lighthouse in a storm', aspect_ratio: '16:9', loop: false };

/** A breaker over a real client over a real sandbox, all on one manual clock. */
async function setup(t: Test, options: { maxRps?: number; timeoutMs?: number } = {}) {
  const clock = new ManualClock(Date.parse('2026-11-29T12:00:00.000Z'));
  const sandbox: Sandbox = await startSandbox({ clock, apiKey: KEY, assetBaseUrl: 'http://127.0.0.1:1/assets', random: () => 0.5 });
  const sleeps: number[] = [];
  const client = createUpstreamClient({
    baseUrl: sandbox.url,
    apiKey: KEY,
    maxRps: options.maxRps ?? 0,
    timeoutMs: options.timeoutMs ?? 2000,
    clock,
    random: () => 0.5,
    // The rate budget and retries wait through here: time passes on the manual clock only.
    sleep: async (ms) => {
      sleeps.push(ms);
      clock.advance(ms);
    },
  });
  const states: CircuitState[] = [];
  const shortCircuits: string[] = [];
  const breaker = withCircuitBreaker(client, {
    clock,
    consecutiveFailures: 3,
    halfOpenAfterMs: 10_000,
    onStateChange: (state) => states.push(state),
    onShortCircuit: (op) => shortCircuits.push(op),
  });
  t.teardown(async () => {
    await breaker.close();
    await sandbox.close();
  });
  return { clock, sandbox, breaker, states, shortCircuits, sleeps };
}

t.test('consecutive 5xx answers open the circuit; open, it refuses at once without calling the upstream', async (t) => {
  const { sandbox, breaker, states, shortCircuits, clock } = await setup(t);
  sandbox.injectFault({ op: 'create', status: 500, times: 2 });
  sandbox.injectFault({ op: 'create', html: true, status: 502, times: 1 });
  for (let i = 0; i < 3; i++)
    t.equal((await upstreamRejection(breaker.createGeneration(request))).kind, 'unavailable', `outage ${i + 1} passes through`);
  t.equal(breaker.circuitState(), 'open');
  t.same(states, ['open']);

  const creates = sandbox.stats.creates;
  const refused = await upstreamRejection(breaker.createGeneration(request));
  t.equal(refused.kind, 'circuit_open');
  t.equal(refused.retryAfterMs, 10_000, 'retry after the open period');
  t.equal(sandbox.stats.creates, creates, 'the upstream was not called');
  const queryRefused = await upstreamRejection(breaker.getGeneration('anything'));
  t.equal(queryRefused.kind, 'circuit_open', 'polls share the breaker');
  t.equal(sandbox.stats.queries, 0);
  t.same(shortCircuits, ['create', 'query']);

  clock.advance(4_000);
  t.equal((await upstreamRejection(breaker.createGeneration(request))).retryAfterMs, 6_000, 'retry-after counts down on the clock');
});

t.test('network failures and timeouts count as outages too', async (t) => {
  const { sandbox, breaker } = await setup(t, { timeoutMs: 50 });
  sandbox.injectFault({ op: 'create', destroySocket: true, times: 2 });
  sandbox.injectFault({ op: 'create', delayMs: 300 });
  t.equal((await upstreamRejection(breaker.createGeneration(request))).kind, 'unavailable');
  t.equal((await upstreamRejection(breaker.createGeneration(request))).kind, 'unavailable');
  t.equal((await upstreamRejection(breaker.createGeneration(request))).kind, 'timeout');
  t.equal(breaker.circuitState(), 'open');
});

t.test('refusals prove the upstream is up: moderation, auth, 429 and unknown ids never open the circuit', async (t) => {
  const { sandbox, breaker } = await setup(t);
  for (let i = 0; i < 4; i++) {
    t.equal((await upstreamRejection(breaker.createGeneration({ ...request, prompt: 'Refuse this [moderate]' }))).kind, 'rejected');
  }
  sandbox.injectFault({ op: 'create', status: 401, body: { error: { message: 'Invalid token' } }, times: 4 });
  for (let i = 0; i < 4; i++) t.equal((await upstreamRejection(breaker.createGeneration(request))).kind, 'auth');
  sandbox.injectFault({ op: 'create', status: 429, body: { error: { message: 'slow down' } }, times: 4 });
  for (let i = 0; i < 4; i++) t.equal((await upstreamRejection(breaker.createGeneration(request))).kind, 'rate_limited');
  for (let i = 0; i < 4; i++) t.equal((await upstreamRejection(breaker.getGeneration('no-such-task'))).kind, 'not_found');
  t.equal(breaker.circuitState(), 'closed');
});

t.test('any answer in between resets the count: only consecutive outages open it', async (t) => {
  const { sandbox, breaker } = await setup(t);
  sandbox.injectFault({ op: 'create', status: 503, times: 2 });
  await upstreamRejection(breaker.createGeneration(request));
  await upstreamRejection(breaker.createGeneration(request));
  await breaker.createGeneration(request);
  sandbox.injectFault({ op: 'create', status: 503, times: 2 });
  await upstreamRejection(breaker.createGeneration(request));
  await upstreamRejection(breaker.createGeneration(request));
  t.equal(breaker.circuitState(), 'closed', 'after a success');
  t.equal((await upstreamRejection(breaker.createGeneration({ ...request, prompt: 'Refuse this [moderate]' }))).kind, 'rejected');
  sandbox.injectFault({ op: 'create', status: 503, times: 2 });
  await upstreamRejection(breaker.createGeneration(request));
  await upstreamRejection(breaker.createGeneration(request));
  t.equal(breaker.circuitState(), 'closed', 'after a refusal, which proves the upstream answers');
  sandbox.injectFault({ op: 'create', status: 503 });
  await upstreamRejection(breaker.createGeneration(request));
  t.equal(breaker.circuitState(), 'open', 'the third outage in a row opens it');
});

t.test('after the open period one probe goes through: success closes, another outage reopens', async (t) => {
  const { sandbox, breaker, clock, states } = await setup(t);
  sandbox.injectFault({ op: 'create', status: 500, times: 3 });
  for (let i = 0; i < 3; i++) await upstreamRejection(breaker.createGeneration(request));
  clock.advance(9_999);
  t.equal(breaker.circuitState(), 'open');
  clock.advance(1);
  t.equal(breaker.circuitState(), 'half_open', 'the next call is the probe');

  sandbox.injectFault({ op: 'create', status: 502 });
  const creates = sandbox.stats.creates;
  t.equal((await upstreamRejection(breaker.createGeneration(request))).kind, 'unavailable', 'the failed probe reaches the upstream');
  t.equal(sandbox.stats.creates, creates + 1);
  t.equal(breaker.circuitState(), 'open', 'a failed probe reopens at once');
  t.equal((await upstreamRejection(breaker.createGeneration(request))).retryAfterMs, 10_000, 'for a whole new open period');

  clock.advance(10_000);
  // Concurrent callers while the probe runs wait for it instead of all hitting a sick upstream.
  const [probe, ...others] = await Promise.all([
    breaker.createGeneration(request),
    breaker.createGeneration(request),
    breaker.getGeneration('whatever').catch((error: unknown) => error),
  ]);
  t.match(probe, { status: 'queued' });
  t.match(others[0], { status: 'queued' }, 'the waiting create runs once the probe succeeded');
  t.match(others[1], { kind: 'not_found' }, 'the waiting query too');
  t.equal(breaker.circuitState(), 'closed');
  t.same(states, ['open', 'half_open', 'open', 'half_open', 'closed']);
});

t.test('UPSTREAM_MAX_RPS is one budget shared by creates and polls', async (t) => {
  const { breaker, sleeps } = await setup(t, { maxRps: 2 });
  const created = await breaker.createGeneration(request);
  await breaker.getGeneration(created.upstreamId);
  t.same(sleeps, [], 'a burst of 2 calls, whatever their kind');
  await breaker.createGeneration(request);
  await breaker.getGeneration(created.upstreamId);
  await breaker.createGeneration(request);
  t.same(sleeps, [500, 500, 500], 'then one call every 500 ms across creates and queries');
});

t.test(
  'gateway: a create that would wait past maxCreateQueueMs for the rate budget is refused at once (503), takes no token and frees its key',
  async (t) => {
    const clock = new ManualClock(Date.parse('2026-11-29T12:00:00.000Z'));
    const sandbox = await startSandbox({ clock, apiKey: KEY, assetBaseUrl: 'http://127.0.0.1:1/assets', random: () => 0.5 });
    t.teardown(() => sandbox.close());
    const sleeps: number[] = [];
    const clients: UpstreamClient[] = [];
    const gw = await startTestGateway(t, {
      clock,
      sandboxInstance: sandbox,
      gateway: {
        upstream: (hooks) => {
          const client = createUpstreamClient({
            baseUrl: sandbox.url,
            apiKey: KEY,
            maxRps: 1,
            maxCreateQueueMs: 10_000,
            timeoutMs: 2000,
            clock,
            random: () => 0.5,
            // Records the budget's waits; no time passes, so the debt stays until the test moves the clock.
            sleep: async (ms) => {
              sleeps.push(ms);
            },
            ...hooks,
          });
          clients.push(client);
          return client;
        },
      },
    });
    const upstream = clients[0];
    if (upstream === undefined) throw new Error('no upstream client built');
    const postVideo = (prompt: string, key?: string) =>
      gw.app.inject({
        method: 'POST',
        url: '/videos',
        headers: { ...auth(), ...(key === undefined ? {} : { 'idempotency-key': key }) },
        payload: { prompt },
      });

    const created = await createVideo(gw, { prompt: 'Takes the only token of the burst' });
    const upstreamId = await upstreamIdOf(gw, created.id);
    // Polls queue however long it takes: 11 of them book the budget 11 s ahead.
    for (let i = 0; i < 11; i++) await upstream.getGeneration(upstreamId);
    t.same(sleeps, [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10_000, 11_000], 'queries wait past the create bound');

    const refused = await postVideo('A create that would wait 12 s', 'queued-too-long');
    t.equal(refused.statusCode, 503);
    t.equal(refused.headers['content-type'], 'application/problem+json; charset=utf-8');
    t.equal(refused.json().code, 'upstream_unavailable');
    t.equal(refused.headers['retry-after'], '12', 'seconds until the booked budget is paid');
    t.equal(sandbox.stats.creates, 1, 'the refused create never reached the upstream');
    t.equal(sleeps.length, 11, 'and never waited');

    await upstream.getGeneration(upstreamId);
    t.equal(sleeps.at(-1), 12_000, 'the refused create took no token: the next poll waits as if it never came');

    clock.advance(13_000);
    const retried = await postVideo('A create that would wait 12 s', 'queued-too-long');
    t.equal(retried.statusCode, 202, 'the key was released: the retry runs');
    t.equal(retried.headers['idempotent-replayed'], undefined);
    t.equal(sandbox.stats.creates, 2);
  },
);

t.test(
  'gateway: while the circuit is open POST /videos answers 503 upstream_unavailable with retry-after, and /readyz says so',
  async (t) => {
    const gw = await startTestGateway(t);
    gw.sandbox.injectFault({ op: 'create', status: 500, times: 5 });
    for (let i = 0; i < 5; i++) {
      const response = await gw.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: { prompt: 'A storm at sea' } });
      t.equal(response.statusCode, 502, `outage ${i + 1}: 502 upstream_unavailable`);
    }
    const refused = await gw.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: { prompt: 'A storm at sea' } });
    t.equal(refused.statusCode, 503);
    t.equal(refused.headers['content-type'], 'application/problem+json; charset=utf-8');
    t.equal(refused.json().code, 'upstream_unavailable');
    t.equal(refused.headers['retry-after'], '30', 'seconds until the probe');
    t.equal(gw.sandbox.stats.creates, 5, 'the sixth create never reached the upstream');

    const ready = await gw.app.inject({ method: 'GET', url: '/readyz' });
    t.equal(ready.statusCode, 200, 'an open circuit alone does not pull the replica');
    t.same(ready.json(), { status: 'ready', checks: { store: 'ok', upstreamAuth: 'ok', upstreamCircuit: 'open' } });

    gw.clock.advance(30_000);
    t.equal((await gw.app.inject({ method: 'GET', url: '/readyz' })).json().checks.upstreamCircuit, 'half_open');
    const probe = await gw.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: { prompt: 'A calm sea' } });
    t.equal(probe.statusCode, 202, 'the probe create succeeds');
    t.equal((await gw.app.inject({ method: 'GET', url: '/readyz' })).json().checks.upstreamCircuit, 'closed');
  },
);

t.test('gateway: polls failing with 5xx open the circuit; polling then waits for the probe and recovers', async (t) => {
  const gw = await startTestGateway(t);
  const videos = [];
  for (let i = 0; i < 5; i++) videos.push(await createVideo(gw, { prompt: `Video number ${i}` }));
  gw.sandbox.injectFault({ op: 'query', status: 503, times: 1000 });
  gw.clock.advance(2_500);
  await gw.poller.tick();
  t.equal(gw.circuitState(), 'open', 'five failed polls (each retried) opened it');

  gw.sandbox.reset();
  await advanceAndPoll(gw, 29_000);
  t.equal(gw.sandbox.stats.queries, 0, 'no poll reaches the upstream while the circuit is open');
  const read = await gw.app.inject({ method: 'GET', url: `/videos/${videos[0]?.id ?? ''}`, headers: auth() });
  t.equal(read.json().status, 'queued', 'videos are kept, not failed');

  await advanceAndPoll(gw, 20_000);
  t.equal(gw.circuitState(), 'closed');
  t.ok(gw.sandbox.stats.queries >= 5, 'polling resumed');
  for (const video of videos) {
    const response = await gw.app.inject({ method: 'GET', url: `/videos/${video.id}`, headers: auth() });
    t.equal(response.json().status, 'completed');
  }
});

t.test('health tracking: a refused key marks auth failing until any call is answered, whoever made it', async (t) => {
  const { sandbox, breaker, clock } = await setup(t);
  const health = createUpstreamHealth(clock);
  const tracked = withHealthTracking(breaker, health);
  sandbox.injectFault({ op: 'create', status: 401, body: { error: { message: 'Invalid token' } }, times: 1 });
  t.equal((await upstreamRejection(tracked.createGeneration(request))).kind, 'auth');
  const since = health.authFailingSince();
  t.equal(since, clock.now(), 'marked at the refusal');

  sandbox.injectFault({ op: 'create', status: 500, times: 1 });
  clock.advance(1_000);
  t.equal((await upstreamRejection(tracked.createGeneration(request))).kind, 'unavailable');
  t.equal(health.authFailingSince(), since, 'an outage says nothing about the key');

  const created = await tracked.createGeneration(request);
  t.equal(health.authFailingSince(), null, 'an answered create clears it');
  sandbox.injectFault({ op: 'query', status: 403, times: 1 });
  t.equal((await upstreamRejection(tracked.getGeneration(created.upstreamId))).kind, 'auth');
  t.not(health.authFailingSince(), null, 'a refused query marks it too');
  await tracked.getGeneration(created.upstreamId);
  t.equal(health.authFailingSince(), null, 'an answered query clears it');
});

t.test('gateway: a create refused for our key pulls the replica from readiness until a create is answered', async (t) => {
  const gw = await startTestGateway(t);
  gw.sandbox.injectFault({ op: 'create', status: 401, body: { error: { message: 'Invalid token' } }, times: 1 });
  const refused = await gw.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: { prompt: 'A storm at sea' } });
  t.equal(refused.statusCode, 503, 'never a 401 to the client, whose key is fine');
  const notReady = await gw.app.inject({ method: 'GET', url: '/readyz' });
  t.equal(notReady.statusCode, 503);
  t.equal(notReady.json().checks.upstreamAuth, 'refused');
  await createVideo(gw);
  t.equal((await gw.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
});
