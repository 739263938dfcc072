import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

import { startProcess, tsxArgs } from './processes.js';

const UpstreamStats = Type.Object({
  requests: Type.Number(),
  creates: Type.Number(),
  queries: Type.Number(),
  /** Queries of each task the simulator was asked to create. */
  queriesPerTask: Type.Array(Type.Number()),
  /** Most requests in any window of at most 1 s since start (or the last `resetPeak`). */
  maxInOneSecond: Type.Number(),
});

export interface UpstreamProcess {
  /** ELKAPI_BASE_URL for the gateway. */
  readonly url: string;
  /** The gateway config that points it at this simulator instead of its in-process sandbox. */
  readonly gatewayEnv: Record<string, string>;
  stats(): Promise<typeof UpstreamStats.static>;
  resetPeak(): Promise<void>;
  stop(): Promise<void>;
}

export async function startUpstream(options: { durationMs: number; queueMs: number }): Promise<UpstreamProcess> {
  const { process: child, match } = await startProcess({
    name: 'upstream',
    command: process.execPath,
    args: tsxArgs('bench/upstream.ts'),
    env: { UPSTREAM_DURATION_MS: String(options.durationMs), UPSTREAM_QUEUE_MS: String(options.queueMs) },
    ready: /upstream listening on (\S+) stats on (\S+)/,
  });
  const url = match[1] ?? '';
  const statsUrl = match[2] ?? '';
  return {
    url,
    gatewayEnv: { ELKAPI_API_KEY: 'sk-bench-upstream', ELKAPI_BASE_URL: url },
    async stats() {
      const json: unknown = await (await fetch(`${statsUrl}/stats`)).json();
      if (!Value.Check(UpstreamStats, json)) throw new Error('upstream: unexpected stats');
      return json;
    },
    async resetPeak() {
      await (await fetch(`${statsUrl}/reset-peak`)).arrayBuffer();
    },
    stop: () => child.stop(),
  };
}
