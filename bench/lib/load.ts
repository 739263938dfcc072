// The load generators, always child processes: wrk when installed (C, one thread, cheap per request), else
// autocannon's CLI; autocannon also for fixed-rate runs (`--overallRate`, latencies corrected for coordinated
// omission), which wrk 4 cannot do.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

import { runToEnd } from './processes.js';

export interface LoadOptions {
  url: string;
  headers?: Record<string, string>;
  connections: number;
  seconds: number;
  /** The status every answer must have (default 200); others count as `unexpected`. */
  expectStatus?: number;
}

export interface LoadResult {
  tool: 'wrk' | 'autocannon';
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Socket errors and answers with another status. */
  unexpected: number;
}

const wrkScript = fileURLToPath(new URL('../wrk-json.lua', import.meta.url));
const autocannonBin = fileURLToPath(new URL('../../node_modules/.bin/autocannon', import.meta.url));

export const wrkInstalled = ((): boolean => {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (error) {
    // wrk --version prints its usage and exits 1: installed. ENOENT: not installed.
    return !(error instanceof Error && 'code' in error && error.code === 'ENOENT');
  }
})();

const WrkSummary = Type.Object({
  requests: Type.Number(),
  durationUs: Type.Number(),
  socketErrors: Type.Number(),
  statusErrors: Type.Number(),
  p50Us: Type.Number(),
  p99Us: Type.Number(),
});

/** The fields of `autocannon --json` used here (latencies in ms). */
const AutocannonSummary = Type.Object({
  duration: Type.Number(),
  errors: Type.Number(),
  requests: Type.Object({ total: Type.Number() }),
  latency: Type.Object({ p50: Type.Number(), p99: Type.Number() }),
  statusCodeStats: Type.Record(Type.String(), Type.Object({ count: Type.Number() })),
});

function parseAs<T extends TSchema>(schema: T, text: string, tool: string): Static<T> {
  const json: unknown = JSON.parse(text);
  if (!Value.Check(schema, json)) throw new Error(`${tool}: unexpected summary ${text.slice(0, 300)}`);
  return json;
}

async function runWrk(options: LoadOptions): Promise<LoadResult> {
  const headerArgs = Object.entries(options.headers ?? {}).flatMap(([name, value]) => ['-H', `${name}: ${value}`]);
  const out = await runToEnd('wrk', 'wrk', [
    '-t1',
    `-c${options.connections}`,
    `-d${options.seconds}s`,
    '-s',
    wrkScript,
    ...headerArgs,
    options.url,
  ]);
  const line = /^WRK_JSON (.*)$/m.exec(out)?.[1];
  if (line === undefined) throw new Error(`wrk printed no summary:\n${out}`);
  const summary = parseAs(WrkSummary, line, 'wrk');
  // wrk counts only statuses ≥ 400 as errors; the expected status itself is checked before each scenario.
  return {
    tool: 'wrk',
    requestsPerSecond: summary.requests / (summary.durationUs / 1e6),
    p50Ms: summary.p50Us / 1000,
    p99Ms: summary.p99Us / 1000,
    unexpected: summary.socketErrors + summary.statusErrors,
  };
}

export interface AutocannonOptions extends LoadOptions {
  /** Requests per second over all connections (`--overallRate`). */
  rate?: number;
  /** Stop after this many requests instead of after `seconds`. */
  amount?: number;
  method?: string;
  body?: string;
}

export async function runAutocannon(options: AutocannonOptions): Promise<LoadResult & { total: number }> {
  const args = ['-j', '-n', '-c', String(options.connections)];
  if (options.amount !== undefined) args.push('-a', String(options.amount));
  else args.push('-d', String(options.seconds));
  if (options.rate !== undefined) args.push('-R', String(Math.round(options.rate)));
  if (options.method !== undefined) args.push('-m', options.method);
  if (options.body !== undefined) args.push('-b', options.body);
  for (const [name, value] of Object.entries(options.headers ?? {})) args.push('-H', `${name}=${value}`);
  const summary = parseAs(AutocannonSummary, await runToEnd('autocannon', autocannonBin, [...args, options.url]), 'autocannon');
  const total = summary.requests.total;
  const expected = summary.statusCodeStats[String(options.expectStatus ?? 200)]?.count ?? 0;
  return {
    tool: 'autocannon',
    requestsPerSecond: total / summary.duration,
    p50Ms: summary.latency.p50,
    p99Ms: summary.latency.p99,
    unexpected: total - expected + summary.errors,
    total,
  };
}

/** Closed-loop load at full speed: as many requests as `connections` can keep in flight. */
export const runLoad = (options: LoadOptions): Promise<LoadResult> => (wrkInstalled ? runWrk(options) : runAutocannon(options));
