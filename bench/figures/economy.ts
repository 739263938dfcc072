// Figure 4: what one generation costs upstream with the default schedule, counted by the simulator itself.
import { createVideo, startGateway } from '../lib/gateway.js';
import { sleep } from '../lib/processes.js';
import { type Row } from '../lib/report.js';
import { max } from '../lib/stats.js';
import { startUpstream } from '../lib/upstream.js';

const videoCount = 100;
const generationMs = 60_000;

export async function economyFigure(log: (line: string) => void): Promise<Row[]> {
  const upstream = await startUpstream({ durationMs: generationMs, queueMs: 2_000 });
  // Everything else at its default: POLL_INTERVAL_* 2 s..15 s, UPSTREAM_MAX_RPS 20.
  const gateway = await startGateway({ name: 'gateway (economy)', env: upstream.gatewayEnv });
  try {
    for (let index = 0; index < videoCount; index += 1) await createVideo(gateway.url, { prompt: `An economy benchmark video ${index}` });
    log(`figure 4: ${videoCount} videos of ${generationMs / 1000} s created; waiting for all to finish`);
    const deadline = Date.now() + generationMs + 60_000;
    while ((await gateway.metrics()).sum('gateway_videos_in_flight') > 0) {
      if (Date.now() > deadline) throw new Error('figure 4: videos still in flight long after their generation time');
      await sleep(1_000);
    }
    const perVideo = (await upstream.stats()).queriesPerTask;
    const mean = perVideo.reduce((sum, count) => sum + count, 0) / perVideo.length;
    return [
      {
        figure: `4. Upstream queries per video (${videoCount} videos of a ${generationMs / 1000} s generation, default schedule)`,
        gateway: `mean ${mean.toFixed(1)}, max ${max(perVideo)} (${perVideo.length} videos)`,
        baseline: '—',
        ratio: '—',
        goal: '≤ 8',
        met: perVideo.length === videoCount && max(perVideo) <= 8,
      },
    ];
  } finally {
    await gateway.stop();
    await upstream.stop();
  }
}
