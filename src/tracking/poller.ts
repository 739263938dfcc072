import type { Clock, Random } from '../clock.js';
import type { EventBus } from '../events/bus.js';
import { type ClaimingWorker, createClaimLoop } from '../lib/claim-loop.js';
import { settledWithin } from '../lib/grace.js';
import type { Logger } from '../lib/logger.js';
import type { VideoRecord } from '../store/records.js';
import type { VideoRepository } from '../store/repositories.js';
import { type UpstreamClient, UpstreamError } from '../upstream/types.js';
import { decideAfterAnswer, decideAfterError, type PollDecision, type TrackingPolicy } from './transitions.js';

export interface PollerOptions {
  videos: Pick<VideoRepository, 'claimDue' | 'applyTransition' | 'reschedulePoll' | 'pollSoon'>;
  upstream: UpstreamClient;
  bus: EventBus;
  clock: Clock;
  random: Random;
  newMessageId: () => string;
  logger: Logger;
  policy: TrackingPolicy;
  /** Polls in flight at once (POLL_CONCURRENCY). */
  concurrency: number;
  /** A claimed video is reclaimable after this long, so a crash mid-poll never strands it. */
  leaseMs: number;
  /** How often the background loop looks for due videos. */
  tickMs?: number;
  /** Called after each applied status change (metrics: time to terminal state). */
  onTransition?: (video: VideoRecord) => void;
}

/**
 * Polls running videos. `stop(graceMs)`: an unfinished poll's lease simply expires and it runs again after restart.
 */
export interface Poller extends ClaimingWorker {
  /**
   * An upstream callback for a video (`madeDue`: its next poll was moved to now): claim now. When its poll is
   * already in flight here, that poll's answer may predate the news, so it is made due again once the poll ends.
   */
  hint(videoId: string, madeDue: boolean): void;
}

export function createPoller(options: PollerOptions): Poller {
  const { videos, upstream, bus, clock, logger, policy } = options;
  const inFlight = new Set<Promise<void>>();
  /** Videos polled right now → whether a hint arrived meanwhile. */
  const polling = new Map<string, boolean>();
  /** A 429 pauses all polling until this time (the upstream asked us to slow down). */
  let pausedUntil = 0;
  /**
   * The last claim filled every free slot, so more videos may be due: each finished poll then claims again at
   * once (keeping POLL_CONCURRENCY in flight) instead of leaving its slot empty until the next tick.
   */
  let moreMayBeDue = false;

  const decide = async (video: VideoRecord): Promise<PollDecision> => {
    const context = { now: clock.now(), policy, random: options.random, newMessageId: options.newMessageId };
    try {
      const generation = await upstream.getGeneration(video.upstreamId);
      context.now = clock.now();
      return decideAfterAnswer(video, generation, context);
    } catch (error) {
      context.now = clock.now();
      if (!(error instanceof UpstreamError)) throw error;
      // An auth refusal is logged loudly by the upstream client; the video is kept and readiness reports it.
      if (error.kind === 'rate_limited') {
        pausedUntil = Math.max(pausedUntil, context.now + (error.retryAfterMs ?? policy.schedule.minMs));
        logger.warn({ videoId: video.id, pausedUntil }, 'upstream rate limited polling; pausing');
      } else if (error.kind === 'circuit_open') {
        // One line per open period comes from the breaker; one per video would flood the log.
        logger.debug({ videoId: video.id, retryAfterMs: error.retryAfterMs }, 'poll skipped: upstream circuit open');
      } else if (error.kind !== 'not_found' && error.kind !== 'auth') {
        logger.warn({ videoId: video.id, upstreamId: video.upstreamId, kind: error.kind, detail: error.safeMessage }, 'poll failed');
      }
      return decideAfterError(video, error, context);
    }
  };

  const pollOne = async (video: VideoRecord): Promise<void> => {
    const decision = await decide(video);
    if (decision.kind === 'reschedule') {
      await videos.reschedulePoll(video.id, clock.now(), decision.schedule);
      return;
    }
    const updated = await videos.applyTransition(
      video.id,
      clock.now(),
      decision.transition,
      decision.nextPollAt,
      decision.events,
      video.status,
    );
    if (updated === undefined) {
      logger.info({ videoId: video.id }, 'ignored an upstream answer for a video that is already terminal or was deleted');
      return;
    }
    logger.info(
      { videoId: video.id, upstreamId: video.upstreamId, status: updated.status, upstreamState: updated.upstreamState },
      'video changed',
    );
    bus.publish({ video: updated });
    options.onTransition?.(updated);
  };

  const launch = async (): Promise<Array<Promise<void>>> => {
    const free = options.concurrency - inFlight.size;
    if (free <= 0) return [];
    if (clock.now() < pausedUntil) {
      moreMayBeDue = false;
      return [];
    }
    const due = await videos.claimDue(clock.now(), free, options.leaseMs);
    moreMayBeDue = due.length === free;
    return due.map((video) => {
      polling.set(video.id, false);
      const job = pollOne(video)
        .then(async () => {
          if (polling.get(video.id) === true) await videos.pollSoon(video.id, clock.now());
        })
        .catch((error: unknown) => logger.error({ err: error, videoId: video.id }, 'poll crashed; the lease will expire and retry'))
        .finally(() => {
          polling.delete(video.id);
          inFlight.delete(job);
          if (moreMayBeDue) claimLoop.wake();
        });
      inFlight.add(job);
      return job;
    });
  };

  const claimLoop = createClaimLoop({
    launch,
    tickMs: options.tickMs ?? 250,
    onError: (error) => logger.error({ err: error }, 'claiming due videos failed'),
  });

  return {
    async tick() {
      const jobs = await launch();
      await Promise.all(jobs);
      return jobs.length;
    },
    start: claimLoop.start,
    async stop(graceMs) {
      await claimLoop.stop();
      const settled = Promise.allSettled([...inFlight]);
      if (graceMs === undefined) await settled;
      else if (!(await settledWithin(settled, graceMs))) {
        logger.warn({ graceMs, inFlight: inFlight.size }, 'polls still running at shutdown: their leases will expire and they run again');
      }
    },
    wake: claimLoop.wake,
    hint(videoId, madeDue) {
      if (polling.has(videoId)) polling.set(videoId, true);
      else if (madeDue) claimLoop.wake();
    },
    inFlight: () => inFlight.size,
  };
}
