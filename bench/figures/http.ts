// Figures 1 and 2: the hot read paths, gateway against the bare Fastify baseline serving the same bytes.
import { join } from 'node:path';

import { writeBodies } from '../lib/bodies.js';
import { authHeaders, benchKeySha256, createVideo, type GatewayProcess, readVideoUntil, startGateway } from '../lib/gateway.js';
import { type LoadResult, runAutocannon, runLoad } from '../lib/load.js';
import { freePort, type RunningProcess, startProcess, tsxArgs } from '../lib/processes.js';
import { type Bar, formatInteger, formatMs, formatRatio, type Row, throughput } from '../lib/report.js';
import { median } from '../lib/stats.js';

export interface RoundOptions {
  /** Paired rounds (gateway, then baseline). */
  rounds: number;
  seconds: number;
  /** Once per side and scenario, before its rounds. */
  warmupSeconds: number;
  /** Paired rounds of the fixed-rate p99 run. */
  pacedRounds: number;
}

const connections = 32;

interface Scenario {
  label: string;
  path: string;
  headers: Record<string, string>;
  expectStatus: number;
}

interface Paired {
  gateway: LoadResult[];
  baseline: LoadResult[];
}

const medianOf = (results: readonly LoadResult[], pick: (result: LoadResult) => number): number => median(results.map(pick));

async function expectStatus(url: string, scenario: Scenario): Promise<void> {
  const response = await fetch(url, { headers: scenario.headers });
  await response.arrayBuffer();
  if (response.status !== scenario.expectStatus)
    throw new Error(`${scenario.label}: ${url} answered ${response.status}, expected ${scenario.expectStatus}`);
}

/**
 * Why a 304 cannot be load-tested, or null. RFC 9110 §8.6: a Content-Length in a 304 must be the length the 200
 * would have had. wrk and autocannon (http-parser) trust it and wait for body bytes a 304 never carries, so every
 * connection stalls after its first answer.
 */
async function notModifiedBlocker(url: string, scenario: Scenario, fullLength: number): Promise<string | null> {
  const response = await fetch(url, { headers: scenario.headers });
  await response.arrayBuffer();
  const length = response.headers.get('content-length');
  return length === null || Number(length) === fullLength
    ? null
    : `not measurable: its \`content-length: ${length}\` (the 200 has ${fullLength} bytes) stalls wrk and autocannon`;
}

/** Alternates A B A B … so drift on a shared machine hits both sides alike. */
async function pairedRounds(scenario: Scenario, gateway: string, baseline: string, options: RoundOptions): Promise<Paired> {
  const sides = [gateway, baseline].map((origin) => `${origin}${scenario.path}`);
  for (const url of sides) {
    await expectStatus(url, scenario);
    await runLoad({ url, headers: scenario.headers, connections, seconds: options.warmupSeconds, expectStatus: scenario.expectStatus });
  }
  const paired: Paired = { gateway: [], baseline: [] };
  for (let round = 0; round < options.rounds; round += 1) {
    for (const [index, url] of sides.entries()) {
      const result = await runLoad({
        url,
        headers: scenario.headers,
        connections,
        seconds: options.seconds,
        expectStatus: scenario.expectStatus,
      });
      if (result.unexpected > 0) throw new Error(`${scenario.label}: ${result.unexpected} unexpected answers from ${url}`);
      (index === 0 ? paired.gateway : paired.baseline).push(result);
    }
  }
  return paired;
}

function throughputRow(figure: string, paired: Paired, goal: string, met: (ratio: number) => boolean | null): Row {
  const gatewayRps = medianOf(paired.gateway, (r) => r.requestsPerSecond);
  const baselineRps = medianOf(paired.baseline, (r) => r.requestsPerSecond);
  const ratio = gatewayRps / baselineRps;
  return {
    figure,
    gateway: throughput(
      gatewayRps,
      medianOf(paired.gateway, (r) => r.p99Ms),
    ),
    baseline: throughput(
      baselineRps,
      medianOf(paired.baseline, (r) => r.p99Ms),
    ),
    ratio: formatRatio(ratio),
    goal,
    met: met(ratio),
  };
}

const bar = (label: string, paired: Paired): Bar => ({
  label,
  gateway: medianOf(paired.gateway, (r) => r.requestsPerSecond),
  baseline: medianOf(paired.baseline, (r) => r.requestsPerSecond),
});

export interface HttpSetup {
  completed: GatewayProcess;
  running: GatewayProcess;
  baseline: RunningProcess;
  baselineUrl: string;
  completedId: string;
  completedEtag: string;
  completedBodyBytes: number;
  runningId: string;
  stop(): Promise<void>;
}

/**
 * Two gateways, because the sandbox's duration is global: one where a video completes in a second (figure 1),
 * one where videos stay running for an hour (figure 2). The baseline gets the bytes they really answered.
 */
export async function setUpHttp(workDir: string): Promise<HttpSetup> {
  const completed = await startGateway({ name: 'gateway (completed)', env: { SANDBOX_DURATION_MS: '1s', SANDBOX_QUEUE_MS: '200ms' } });
  const running = await startGateway({ name: 'gateway (running)', env: { SANDBOX_DURATION_MS: '1h', SANDBOX_QUEUE_MS: '0' } });
  const finished = await readVideoUntil(completed.url, (await createVideo(completed.url)).id, (video) => video.status === 'completed');
  if (finished.etag === null) throw new Error('a completed video came without an ETag');
  const runningIds: string[] = [];
  for (let index = 0; index < 20; index += 1)
    runningIds.push((await createVideo(running.url, { prompt: `A running benchmark video ${index}` })).id);
  for (const id of runningIds) await readVideoUntil(running.url, id, (video) => video.status === 'processing');
  const runningId = runningIds[0] ?? '';
  const current = await readVideoUntil(running.url, runningId, () => true);
  const list = await (await fetch(`${running.url}/videos`, { headers: authHeaders })).text();

  const bodiesFile = join(workDir, 'baseline-bodies.json');
  await writeBodies(bodiesFile, {
    keySha256: benchKeySha256,
    videos: { [finished.video.id]: { body: finished.body, etag: finished.etag }, [runningId]: { body: current.body, etag: null } },
    list,
  });
  const { process: baseline, match } = await startProcess({
    name: 'baseline',
    command: process.execPath,
    args: tsxArgs('bench/baseline.ts'),
    env: { BASELINE_BODIES_FILE: bodiesFile, PORT: String(await freePort()) },
    ready: /baseline listening on (http:\/\/\S+)/,
  });
  return {
    completed,
    running,
    baseline,
    baselineUrl: match[1] ?? '',
    completedId: finished.video.id,
    completedEtag: finished.etag,
    completedBodyBytes: Buffer.byteLength(finished.body),
    runningId,
    async stop() {
      await Promise.all([completed.stop(), running.stop(), baseline.stop()]);
    },
  };
}

export async function httpFigures(setup: HttpSetup, options: RoundOptions): Promise<{ rows: Row[]; bars: Bar[] }> {
  const cached: Scenario = { label: 'cached completed GET', path: `/videos/${setup.completedId}`, headers: authHeaders, expectStatus: 200 };
  const notModified: Scenario = {
    ...cached,
    label: 'If-None-Match',
    headers: { ...authHeaders, 'if-none-match': setup.completedEtag },
    expectStatus: 304,
  };
  const runningGet: Scenario = { label: 'running GET', path: `/videos/${setup.runningId}`, headers: authHeaders, expectStatus: 200 };
  const list: Scenario = { label: 'GET /videos', path: '/videos', headers: authHeaders, expectStatus: 200 };

  const cachedRuns = await pairedRounds(cached, setup.completed.url, setup.baselineUrl, options);
  const rows: Row[] = [throughputRow('1. Cached completed `GET /videos/{id}` → 200', cachedRuns, '≥ 0.90×', (ratio) => ratio >= 0.9)];
  const bars = [bar('cached GET → 200', cachedRuns)];

  const blocker = await notModifiedBlocker(`${setup.completed.url}${notModified.path}`, notModified, setup.completedBodyBytes);
  const notModifiedFigure = '1. `If-None-Match` → 304';
  if (blocker !== null) {
    rows.push({ figure: notModifiedFigure, gateway: blocker, baseline: '—', ratio: '—', goal: "≥ the gateway's 200", met: false });
  } else {
    const notModifiedRuns = await pairedRounds(notModified, setup.completed.url, setup.baselineUrl, options);
    const share = medianOf(notModifiedRuns.gateway, (r) => r.requestsPerSecond) / medianOf(cachedRuns.gateway, (r) => r.requestsPerSecond);
    rows.push({
      ...throughputRow(notModifiedFigure, notModifiedRuns, '', () => share >= 1),
      goal: `≥ the gateway's 200 (${formatRatio(share)} of it)`,
    });
    bars.push(bar('If-None-Match → 304', notModifiedRuns));
  }

  // p99 at a fixed rate: half of what the baseline sustained. autocannon paces the requests and corrects the
  // latencies for coordinated omission (a stalled answer counts as every request it held back).
  const rate = medianOf(cachedRuns.baseline, (r) => r.requestsPerSecond) / 2;
  const paced: Paired = { gateway: [], baseline: [] };
  for (let round = 0; round < options.pacedRounds; round += 1) {
    for (const [side, origin] of [
      ['gateway', setup.completed.url],
      ['baseline', setup.baselineUrl],
    ] as const) {
      const result = await runAutocannon({
        url: `${origin}${cached.path}`,
        headers: authHeaders,
        connections,
        seconds: options.seconds,
        rate,
      });
      if (result.unexpected > 0) throw new Error(`paced run: ${result.unexpected} unexpected answers from ${origin}`);
      paced[side].push(result);
    }
  }
  const pacedGatewayP99 = medianOf(paced.gateway, (r) => r.p99Ms);
  const pacedBaselineP99 = medianOf(paced.baseline, (r) => r.p99Ms);
  rows.push({
    figure: `1. p99 of the cached 200 at half the baseline's throughput (${formatInteger(rate)} req/s, autocannon -R)`,
    gateway: `${formatMs(pacedGatewayP99)} (${formatInteger(medianOf(paced.gateway, (r) => r.requestsPerSecond))} req/s done)`,
    baseline: formatMs(pacedBaselineP99),
    ratio: formatRatio(pacedGatewayP99 / pacedBaselineP99),
    goal: '< 5 ms',
    met: pacedGatewayP99 < 5,
  });

  const runningRuns = await pairedRounds(runningGet, setup.running.url, setup.baselineUrl, options);
  const listRuns = await pairedRounds(list, setup.running.url, setup.baselineUrl, options);
  rows.push(
    throughputRow('2. Running `GET /videos/{id}` → 200', runningRuns, 'reported (no regression later)', () => null),
    throughputRow('2. `GET /videos` (20 running videos) → 200', listRuns, 'reported (no regression later)', () => null),
  );
  bars.push(bar('running GET → 200', runningRuns), bar('GET /videos (20) → 200', listRuns));
  return { rows, bars };
}
