// Figure 3: 10,000 videos in flight against the simulator (in its own process): memory, the upstream budget,
// and how late a due poll runs. The gateway exposes no lateness metric, so the bench reads the schedule it
// stores (`videos.next_poll_at` of running rows, read-only): the oldest due time not yet polled is how late
// the poller is right now.
import Database from 'better-sqlite3';

import { jsonHeaders, startGateway } from '../lib/gateway.js';
import { runAutocannon } from '../lib/load.js';
import { sleep } from '../lib/processes.js';
import { formatInteger, formatMs, type Row } from '../lib/report.js';
import { max } from '../lib/stats.js';
import { startUpstream } from '../lib/upstream.js';

const videoCount = 10_000;
const upstreamMaxRps = 1_000;
/** Past the longest poll interval (15 s) after the last create: every video is on its steady schedule. */
const settleMs = 20_000;
const observeMs = 30_000;
const sampleEveryMs = 250;

interface Sample {
  at: number;
  running: number;
  latenessMs: number;
  /** Upstream requests per second over the previous sample interval. */
  upstreamRps: number;
}

export async function inFlightFigure(log: (line: string) => void): Promise<Row[]> {
  // Generations far longer than the run: all 10,000 stay in flight throughout.
  const upstream = await startUpstream({ durationMs: 3_600_000, queueMs: 2_000 });
  const gateway = await startGateway({
    name: 'gateway (in flight)',
    env: { ...upstream.gatewayEnv, UPSTREAM_MAX_RPS: String(upstreamMaxRps) },
  });
  try {
    const db = new Database(gateway.dbPath, { readonly: true, fileMustExist: true });
    const oldestDue = db.prepare<[], { running: number; oldest: number | null }>(
      "SELECT COUNT(*) AS running, MIN(next_poll_at) AS oldest FROM videos WHERE status IN ('queued', 'processing')",
    );
    const samples: Sample[] = [];
    let previous = { at: Date.now(), requests: 0 };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const row = oldestDue.get();
        const { requests } = await upstream.stats();
        const at = Date.now();
        samples.push({
          at,
          running: row?.running ?? 0,
          latenessMs: row?.oldest == null ? 0 : Math.max(0, at - row.oldest),
          upstreamRps: ((requests - previous.requests) * 1000) / Math.max(1, at - previous.at),
        });
        previous = { at, requests };
        await sleep(sampleEveryMs);
      }
    })();

    const createdFrom = Date.now();
    const created = await runAutocannon({
      url: `${gateway.url}/videos`,
      method: 'POST',
      headers: jsonHeaders,
      body: JSON.stringify({ prompt: 'An in-flight benchmark video' }),
      connections: 32,
      seconds: 0,
      amount: videoCount,
      expectStatus: 202,
    });
    const createSeconds = (Date.now() - createdFrom) / 1000;
    log(
      `figure 3: ${created.total - created.unexpected} videos created in ${createSeconds.toFixed(1)} s; observing ${observeMs / 1000} s after a ${settleMs / 1000} s settle`,
    );
    const observeFrom = Date.now() + settleMs;
    await sleep(settleMs + observeMs);
    sampling = false;
    await sampler;
    db.close();

    const memory = await gateway.memory();
    const stats = await upstream.stats();
    const steady = samples.filter((sample) => sample.at >= observeFrom);
    // "While UPSTREAM_MAX_RPS allows": the budget had room (< 90 % used) over the sample interval.
    const withRoom = steady.filter((sample) => sample.upstreamRps < 0.9 * upstreamMaxRps);
    const steadyLateness = max(withRoom.map((sample) => sample.latenessMs));
    const running = Math.min(...steady.map((sample) => sample.running));
    const steadyRps = steady.length < 2 ? Number.NaN : steady.reduce((sum, sample) => sum + sample.upstreamRps, 0) / steady.length;
    log(`figure 3: worst lateness during the ramp ${formatMs(max(samples.filter((s) => s.at < observeFrom).map((s) => s.latenessMs)))}`);

    return [
      {
        figure: `3. ${formatInteger(videoCount)} videos in flight: gateway RSS`,
        gateway: `${memory.rssMiB.toFixed(0)} MiB (peak ${memory.peakMiB.toFixed(0)} MiB), ${formatInteger(running)} in flight`,
        baseline: '—',
        ratio: '—',
        goal: '< 300 MB',
        met: memory.peakMiB * 1.048576 < 300 && running === videoCount,
      },
      {
        figure: `3. Upstream calls in any 1 s window (UPSTREAM_MAX_RPS=${upstreamMaxRps}, creates at full speed)`,
        gateway: `max ${formatInteger(stats.maxInOneSecond)}; steady ${formatInteger(steadyRps)}/s`,
        baseline: '—',
        ratio: '—',
        goal: `≤ ${formatInteger(upstreamMaxRps)}`,
        met: stats.maxInOneSecond <= upstreamMaxRps,
      },
      {
        figure: '3. Oldest due poll not yet done, steady state, while the budget has room',
        gateway:
          withRoom.length === 0
            ? `budget never had room (${formatInteger(steadyRps)}/s used)`
            : `${formatMs(steadyLateness)} late at worst (${withRoom.length} samples)`,
        baseline: '—',
        ratio: '—',
        goal: '≤ 1 s',
        met: withRoom.length > 0 && steadyLateness <= 1_000,
      },
    ];
  } finally {
    await gateway.stop();
    await upstream.stop();
  }
}
