import { join } from 'node:path';

import t from 'tap';

import type { Video } from '../schemas/video.js';
import { advanceAndPoll, auth, createVideo, startTestGateway, type TestGateway, upstreamIdOf } from './helpers/gateway.js';
import { parsePrometheus, type Sample, sampleValue } from './helpers/prometheus.js';

async function scrape(gw: TestGateway): Promise<Sample[]> {
  const response = await gw.app.inject({ method: 'GET', url: '/metrics' });
  if (response.statusCode !== 200) throw new Error(`/metrics answered ${response.statusCode}`);
  return parsePrometheus(response.body);
}

const httpCount = (samples: Sample[], method: string, route: string, status: number): number | undefined =>
  sampleValue(samples, 'gateway_http_request_duration_seconds_count', { method, route, status_code: String(status) });

t.test('GET /metrics answers the Prometheus text format with process and gateway metrics', async (t) => {
  const gw = await startTestGateway(t);
  const response = await gw.app.inject({ method: 'GET', url: '/metrics' });
  t.equal(response.statusCode, 200);
  t.equal(response.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  t.equal(response.headers['cache-control'], 'no-store');
  const samples = parsePrometheus(response.body);
  t.ok(sampleValue(samples, 'process_cpu_user_seconds_total') !== undefined, 'process metrics');
  t.ok(sampleValue(samples, 'nodejs_eventloop_lag_seconds') !== undefined, 'event loop lag');
  t.equal(sampleValue(samples, 'gateway_videos_in_flight'), 0);
  t.match(response.body, /# HELP gateway_http_request_duration_seconds /);
  t.match(response.body, /# TYPE gateway_video_time_to_terminal_seconds histogram/);
});

t.test('a video’s life shows in the metrics: requests by route pattern, upstream calls, in flight, time to terminal, cache', async (t) => {
  const gw = await startTestGateway(t);
  const created = await createVideo(gw);
  const failing = await createVideo(gw, { prompt: 'This one ends badly [fail]' });
  await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() });
  await gw.app.inject({ method: 'GET', url: '/no/such/route' });
  await gw.app.inject({ method: 'GET', url: `/videos/${created.id}` });

  let samples = await scrape(gw);
  t.equal(sampleValue(samples, 'gateway_videos_in_flight'), 2, 'two videos running');
  t.equal(sampleValue(samples, 'gateway_video_time_to_terminal_seconds_count', { status: 'completed' }) ?? 0, 0);

  gw.clock.advance(1_000);
  await advanceAndPoll(gw, 14_000);
  for (let i = 0; i < 2; i++) await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() });
  const video = (await gw.app.inject({ method: 'GET', url: `/videos/${failing.id}`, headers: auth() })).json<Video>();
  t.equal(video.status, 'failed');

  samples = await scrape(gw);
  t.equal(httpCount(samples, 'POST', '/videos', 202), 2);
  t.equal(httpCount(samples, 'GET', '/videos/:id', 200), 4, 'reads counted under the route pattern');
  t.equal(httpCount(samples, 'GET', '/videos/:id', 401), 1);
  t.equal(httpCount(samples, 'GET', 'unmatched', 404), 1, 'unknown routes share one label value');
  t.notOk(
    samples.some((sample) => Object.values(sample.labels).some((value) => value.includes('vid_') || value.includes('/no/such'))),
    'no raw URL or id in any label',
  );
  t.ok(
    (sampleValue(samples, 'gateway_http_request_duration_seconds_sum', { route: '/videos', method: 'POST', status_code: '202' }) ?? -1) >=
      0,
  );

  t.equal(sampleValue(samples, 'gateway_upstream_request_duration_seconds_count', { operation: 'create', outcome: 'ok' }), 2);
  t.ok((sampleValue(samples, 'gateway_upstream_request_duration_seconds_count', { operation: 'query', outcome: 'ok' }) ?? 0) >= 4, 'polls');
  t.equal(sampleValue(samples, 'gateway_videos_in_flight'), 0, 'both finished');

  t.equal(sampleValue(samples, 'gateway_video_time_to_terminal_seconds_count', { status: 'completed' }), 1);
  t.equal(sampleValue(samples, 'gateway_video_time_to_terminal_seconds_count', { status: 'failed' }), 1);
  t.equal(
    sampleValue(samples, 'gateway_video_time_to_terminal_seconds_sum', { status: 'failed' }),
    (Date.parse(video.completedAt ?? '') - Date.parse(video.createdAt)) / 1000,
    'measured from creation to the terminal state, on the gateway clock',
  );
  t.equal(sampleValue(samples, 'gateway_video_time_to_terminal_seconds_bucket', { status: 'completed', le: '5' }), 0);
  t.equal(sampleValue(samples, 'gateway_video_time_to_terminal_seconds_bucket', { status: 'completed', le: '15' }), 1);

  // Reads of the running video and the first read of each finished one miss; the repeat read hits.
  t.equal(sampleValue(samples, 'gateway_cache_lookups_total', { result: 'miss' }), 3);
  t.equal(sampleValue(samples, 'gateway_cache_lookups_total', { result: 'hit' }), 1);
  t.equal(sampleValue(samples, 'gateway_cache_entries'), 2);
});

t.test('upstream failures are counted by outcome; the circuit shows its state, openings and refusals', async (t) => {
  const gw = await startTestGateway(t);
  let samples = await scrape(gw);
  t.equal(sampleValue(samples, 'gateway_upstream_circuit_state', { state: 'closed' }), 1);
  t.equal(sampleValue(samples, 'gateway_upstream_circuit_state', { state: 'open' }), 0);

  gw.sandbox.injectFault({ op: 'create', status: 500, times: 5 });
  for (let i = 0; i < 6; i++)
    await gw.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: { prompt: 'A storm at sea' } });
  await gw.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: { prompt: 'Nope' } });

  samples = await scrape(gw);
  t.equal(sampleValue(samples, 'gateway_upstream_request_duration_seconds_count', { operation: 'create', outcome: 'unavailable' }), 5);
  t.equal(sampleValue(samples, 'gateway_upstream_circuit_state', { state: 'open' }), 1);
  t.equal(sampleValue(samples, 'gateway_upstream_circuit_state', { state: 'closed' }), 0);
  t.equal(sampleValue(samples, 'gateway_upstream_circuit_opened_total'), 1);
  t.equal(sampleValue(samples, 'gateway_upstream_short_circuited_total', { operation: 'create' }), 2);
  t.equal(httpCount(samples, 'POST', '/videos', 502), 5);
  t.equal(httpCount(samples, 'POST', '/videos', 503), 2);

  gw.clock.advance(30_000);
  samples = await scrape(gw);
  t.equal(sampleValue(samples, 'gateway_upstream_circuit_state', { state: 'half_open' }), 1);
});

t.test('webhook deliveries are recorded by outcome and latency through metrics.recordWebhookDelivery', async (t) => {
  const gw = await startTestGateway(t);
  gw.metrics.recordWebhookDelivery('delivered', 250);
  gw.metrics.recordWebhookDelivery('delivered', 750);
  gw.metrics.recordWebhookDelivery('failed', 15_000);
  const samples = await scrape(gw);
  t.equal(sampleValue(samples, 'gateway_webhook_delivery_duration_seconds_count', { outcome: 'delivered' }), 2);
  t.equal(sampleValue(samples, 'gateway_webhook_delivery_duration_seconds_sum', { outcome: 'delivered' }), 1);
  t.equal(sampleValue(samples, 'gateway_webhook_delivery_duration_seconds_count', { outcome: 'failed' }), 1);
  t.equal(sampleValue(samples, 'gateway_webhook_delivery_duration_seconds_bucket', { outcome: 'failed', le: '10' }), 0);
});

t.test('each gateway has its own registry: two in one process neither collide nor share counts', async (t) => {
  // Each on its own file: t.testdir() recreates the directory, which would delete the first gateway's database.
  const dir = t.testdir();
  const first = await startTestGateway(t, { sqlitePath: join(dir, 'first.db') });
  const second = await startTestGateway(t, { sqlitePath: join(dir, 'second.db') });
  await createVideo(first);
  const [firstSamples, secondSamples] = [await scrape(first), await scrape(second)];
  t.equal(httpCount(firstSamples, 'POST', '/videos', 202), 1);
  t.equal(httpCount(secondSamples, 'POST', '/videos', 202), undefined);
  t.equal(sampleValue(secondSamples, 'gateway_videos_in_flight'), 0);
});

t.test('a store that stops answering leaves the scrape working, with in-flight unknown', async (t) => {
  const gw = await startTestGateway(t);
  await gw.store.close();
  const samples = await scrape(gw);
  t.ok(Number.isNaN(sampleValue(samples, 'gateway_videos_in_flight')), 'NaN, not a stale number');
});

t.test('another tenant’s id moves no cache counter, cached or not: it looks exactly like an unknown id', async (t) => {
  const gw = await startTestGateway(t);
  const video = await createVideo(gw);
  gw.sandbox.completeNow(await upstreamIdOf(gw, video.id));
  await advanceAndPoll(gw, 3_000);
  // Alice's own read fills the cache (a miss), her second read hits.
  for (let i = 0; i < 2; i++) await gw.app.inject({ method: 'GET', url: `/videos/${video.id}`, headers: auth('alice') });
  const lookups = async (): Promise<[number | undefined, number | undefined]> => {
    const samples = await scrape(gw);
    return [
      sampleValue(samples, 'gateway_cache_lookups_total', { result: 'hit' }),
      sampleValue(samples, 'gateway_cache_lookups_total', { result: 'miss' }),
    ];
  };
  const before = await lookups();
  t.same(before, [1, 1]);
  const foreign = await gw.app.inject({ method: 'GET', url: `/videos/${video.id}`, headers: auth('bob') });
  t.equal(foreign.statusCode, 404);
  t.same(await lookups(), before, 'bob probing alice’s cached video counts nothing');
  const unknown = await gw.app.inject({ method: 'GET', url: '/videos/vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC', headers: auth('bob') });
  t.equal(unknown.statusCode, 404);
  t.same(await lookups(), before, 'an unknown id counts nothing either');
});

t.test('with METRICS_TOKEN set, /metrics needs it as a bearer token', async (t) => {
  const token = 'scrape-token-0123456789abcdef';
  const gw = await startTestGateway(t, { env: { METRICS_TOKEN: token } });
  for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789' }, { authorization: token }]) {
    const refused = await gw.app.inject({ method: 'GET', url: '/metrics', headers });
    t.equal(refused.statusCode, 401);
    t.match(refused.json(), { code: 'unauthorized' });
    t.equal(refused.headers['www-authenticate'], 'Bearer realm="metrics"');
  }
  const scraped = await gw.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } });
  t.equal(scraped.statusCode, 200);
  t.match(scraped.body, /gateway_cache_lookups_total/);
  t.equal((await gw.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'other operations routes stay open');
});
