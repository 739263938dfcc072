// Figure 6: 5,000 SSE streams and 5,000 long-polls held at once on 100 queued videos, answered when the poller
// sees them start processing. The gateway does not export its event-bus listener count; what it leaves behind
// is read from outside instead: its timers (process metrics) and its client connections (/proc/net/tcp).
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

import { benchKey, createVideo, type GatewayProcess, startGateway } from '../lib/gateway.js';
import { establishedConnectionsTo, openFilesLimitOf, sleep, startProcess, tsxArgs } from '../lib/processes.js';
import { formatInteger, formatMs, type Row } from '../lib/report.js';
import { max, quantile } from '../lib/stats.js';

const videoCount = 100;
const streams = 5_000;
const longPolls = 5_000;
/** Time to open 10,000 connections before the videos leave `queued`. */
const queueMs = 40_000;

const WaiterResult = Type.Object({
  latenciesMs: Type.Array(Type.Number()),
  statuses: Type.Record(Type.String(), Type.Number()),
  errors: Type.Array(Type.String()),
  errorCount: Type.Number(),
  answeredBeforeHeld: Type.Number(),
  unanswered: Type.Number(),
});

async function leftovers(gateway: GatewayProcess): Promise<{ timers: number; sockets: number }> {
  const timers = (await gateway.metrics()).sum('nodejs_active_resources', { type: 'Timeout' });
  return { timers, sockets: await establishedConnectionsTo(Number(new URL(gateway.url).port)) };
}

export async function waitersFigure(log: (line: string) => void): Promise<Row[]> {
  // Polled at least every 2 s, so the change is seen soon after the simulator's queue time; it then stays
  // processing for the rest of the run (one change per video).
  const gateway = await startGateway({
    name: 'gateway (waiters)',
    env: { SANDBOX_QUEUE_MS: String(queueMs), SANDBOX_DURATION_MS: '10m', POLL_INTERVAL_MAX_MS: '2s', UPSTREAM_MAX_RPS: '1000' },
  });
  try {
    const fileLimit = await openFilesLimitOf(gateway.pid);
    if (fileLimit < streams + longPolls + 1_000) throw new Error(`figure 6: the gateway may open only ${fileLimit} files`);
    const ids: string[] = [];
    for (let index = 0; index < videoCount; index += 1)
      ids.push((await createVideo(gateway.url, { prompt: `A waited-for benchmark video ${index}` })).id);
    const before = await leftovers(gateway);
    const { process: clients, match } = await startProcess({
      name: 'waiters',
      command: process.execPath,
      args: tsxArgs('bench/waiter-load.ts'),
      env: {
        GATEWAY_URL: gateway.url,
        BENCH_KEY: benchKey,
        VIDEO_IDS: ids.join(','),
        SSE_COUNT: String(streams),
        POLL_COUNT: String(longPolls),
      },
      ready: /^HELD (.*)$/m,
      readyTimeoutMs: queueMs,
    });
    await sleep(2_000); // let the gateway take in the last long-polls sent
    const heldMemory = await gateway.memory();
    const heldSockets = (await leftovers(gateway)).sockets - before.sockets;
    log(
      `figure 6: held ${formatInteger(heldSockets)} connections after opening for ${match[1] ?? ''}; RSS ${heldMemory.rssMiB.toFixed(0)} MiB`,
    );

    await clients.exited;
    const line = /^RESULT (.*)$/m.exec(clients.stdout())?.[1];
    const json: unknown = JSON.parse(line ?? 'null');
    if (!Value.Check(WaiterResult, json)) throw new Error('figure 6: the waiters printed no result');
    await sleep(1_000);
    const after = await leftovers(gateway);
    const peak = (await gateway.memory()).peakMiB;
    const latencies = json.latenciesMs;
    const changed = json.statuses['processing'] ?? 0;
    const allAnswered =
      latencies.length === streams + longPolls && json.errorCount === 0 && json.answeredBeforeHeld === 0 && changed === latencies.length;
    const leftTimers = after.timers - before.timers;
    const leftSockets = after.sockets - before.sockets;
    return [
      {
        figure: `6. ${formatInteger(streams)} SSE + ${formatInteger(longPolls)} long-polls held at once: answered after the change`,
        gateway: `${formatInteger(latencies.length)} answered (${json.errorCount} errors, ${json.answeredBeforeHeld} early): p50 ${formatMs(quantile(latencies, 0.5))}, p99 ${formatMs(quantile(latencies, 0.99))}, max ${formatMs(max(latencies))}`,
        baseline: '—',
        ratio: '—',
        goal: 'all within 1 s',
        met: allAnswered && max(latencies) <= 1_000,
      },
      {
        figure: '6. Gateway RSS while held',
        gateway: `${heldMemory.rssMiB.toFixed(0)} MiB (peak ${peak.toFixed(0)} MiB), ${formatInteger(heldSockets)} connections open`,
        baseline: '—',
        ratio: '—',
        goal: '< 1 GB',
        met: peak * 1.048576 < 1_000,
      },
      {
        figure: '6. Left behind once all closed (timers, client connections; bus listeners are not exported)',
        gateway: `${leftTimers} timers, ${leftSockets} connections`,
        baseline: '—',
        ratio: '—',
        goal: '0',
        met: leftTimers <= 0 && leftSockets <= 0,
      },
    ];
  } finally {
    await gateway.stop();
  }
}
