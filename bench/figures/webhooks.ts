// Figure 5: signed webhooks to a receiver process that verifies every signature, in two phases on one gateway:
// - latency: 300 videos created at 100/s complete ~2 s later at that pace; each event's `timestamp` → arrival;
// - drain: the receiver stops answering, 2,000 videos complete (their events wait in the outbox behind the
//   attempts in flight), then it answers again: how fast the gateway empties the backlog.
// POLL_CONCURRENCY and UPSTREAM_MAX_RPS are raised so the poller produces events faster than they are sent.
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

import { benchWebhookSecret, type GatewayProcess, jsonHeaders, startGateway } from '../lib/gateway.js';
import { runAutocannon } from '../lib/load.js';
import { sleep, startProcess, tsxArgs } from '../lib/processes.js';
import { formatInteger, formatMs, type Row } from '../lib/report.js';
import { quantile } from '../lib/stats.js';
import { startUpstream } from '../lib/upstream.js';

const latencyVideos = 300;
const latencyRate = 100;
const drainVideos = 2_000;

const ReceiverStats = Type.Object({
  verified: Type.Number(),
  rejected: Type.Number(),
  /** First attempt of each webhook-id: when it arrived, and its event's `timestamp`. */
  arrivedAt: Type.Array(Type.Number()),
  eventAt: Type.Array(Type.Number()),
});
type ReceiverStats = typeof ReceiverStats.static;

async function createWithCallback(gateway: GatewayProcess, callbackUrl: string, amount: number, rate?: number): Promise<void> {
  const created = await runAutocannon({
    url: `${gateway.url}/videos`,
    method: 'POST',
    headers: jsonHeaders,
    body: JSON.stringify({ prompt: 'A webhook benchmark video', callbackUrl }),
    connections: rate === undefined ? 32 : 4,
    seconds: 0,
    amount,
    ...(rate === undefined ? {} : { rate }),
    expectStatus: 202,
  });
  if (created.unexpected > 0) throw new Error(`figure 5: ${created.unexpected} creates failed`);
}

export async function webhooksFigure(log: (line: string) => void): Promise<Row[]> {
  const { process: receiver, match } = await startProcess({
    name: 'receiver',
    command: process.execPath,
    args: tsxArgs('bench/receiver.ts'),
    env: { WEBHOOK_SECRET: benchWebhookSecret },
    ready: /receiver listening on (\S+)/,
  });
  const receiverUrl = match[1] ?? '';
  const upstream = await startUpstream({ durationMs: 1_000, queueMs: 0 });
  const gateway = await startGateway({
    name: 'gateway (webhooks)',
    env: {
      ...upstream.gatewayEnv,
      UPSTREAM_MAX_RPS: '100000',
      POLL_CONCURRENCY: '1000',
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    },
  });
  const statsOf = async (path: string): Promise<ReceiverStats> => {
    const json: unknown = await (await fetch(`${receiverUrl}/stats?path=${path}`)).json();
    if (!Value.Check(ReceiverStats, json)) throw new Error('receiver: unexpected stats');
    return json;
  };
  const arrivals = async (path: string, count: number, timeoutMs: number): Promise<ReceiverStats> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const stats = await statsOf(path);
      if (stats.arrivedAt.length >= count || Date.now() > deadline) return stats;
      await sleep(250);
    }
  };
  const control = async (action: 'hold' | 'release'): Promise<number> => {
    const answer: unknown = await (await fetch(`${receiverUrl}/${action}`, { method: 'POST' })).json();
    return typeof answer === 'object' && answer !== null && 'at' in answer && typeof answer.at === 'number' ? answer.at : Date.now();
  };
  try {
    await createWithCallback(gateway, `${receiverUrl}/hooks/latency`, latencyVideos, latencyRate);
    const paced = await arrivals('/hooks/latency', latencyVideos, 60_000);
    const latencies = paced.arrivedAt.map((arrivedAt, index) => arrivedAt - (paced.eventAt[index] ?? Number.NaN));
    log(`figure 5: ${paced.arrivedAt.length} of ${latencyVideos} paced webhooks arrived`);

    await control('hold');
    await createWithCallback(gateway, `${receiverUrl}/hooks/drain`, drainVideos);
    const deadline = Date.now() + 120_000;
    while ((await gateway.metrics()).sum('gateway_videos_in_flight') > 0 && Date.now() < deadline) await sleep(250);
    const heldCount = (await statsOf('/hooks/drain')).arrivedAt.length;
    const releasedAt = await control('release');
    const drained = await arrivals('/hooks/drain', drainVideos, 120_000);
    const lastArrival = drained.arrivedAt.reduce((a, b) => Math.max(a, b), 0);
    const drainRate = ((drained.arrivedAt.length - heldCount) * 1000) / Math.max(1, lastArrival - releasedAt);
    log(
      `figure 5: ${heldCount} attempts held, then ${drained.arrivedAt.length - heldCount} drained in ${((lastArrival - releasedAt) / 1000).toFixed(1)} s`,
    );
    await sleep(500); // an attempt is recorded after its answer
    const recorded = (await gateway.metrics()).sum('gateway_webhook_delivery_duration_seconds_count', { outcome: 'delivered' });
    const expected = latencyVideos + drainVideos;
    const p50 = quantile(latencies, 0.5);
    const p99 = quantile(latencies, 0.99);
    return [
      {
        figure: `5. Webhook event → first delivery attempt (${latencyVideos} events at ~${latencyRate}/s)`,
        gateway: `p50 ${formatMs(p50)}, p99 ${formatMs(p99)} (${paced.arrivedAt.length} arrived)`,
        baseline: '—',
        ratio: '—',
        goal: 'p50 < 100 ms, p99 < 500 ms',
        met: paced.arrivedAt.length === latencyVideos && p50 < 100 && p99 < 500,
      },
      {
        figure: `5. Signed deliveries/s draining a backlog of ${formatInteger(drainVideos)} to one receiver`,
        gateway: `${formatInteger(drainRate)}/s; ${formatInteger(recorded)} of ${formatInteger(expected)} recorded, ${drained.rejected} bad signatures`,
        baseline: '—',
        ratio: '—',
        goal: '≥ 1,000/s, each recorded',
        met: drainRate >= 1000 && recorded === expected && drained.rejected === 0,
      },
    ];
  } finally {
    await gateway.stop();
    await upstream.stop();
    await receiver.stop();
  }
}
