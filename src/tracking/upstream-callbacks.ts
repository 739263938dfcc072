import type { Clock } from '../clock.js';
import type { Logger } from '../lib/logger.js';
import type { VideoRepository } from '../store/repositories.js';
import { type CallbackTokens, callbackUrl } from './callback-token.js';
import { callbackPollAt, callbackPollWindowMs } from './schedule.js';

/*
 * Upstream callbacks as a hint, never as truth (DESIGN §4.1). A callback names its video only through the token in
 * its URL; its body is never read for state: it only makes the video due for a poll, and the poll's fetch decides.
 */

/** What became of one callback: the route answers 204, 404 or 429 from it. */
export type CallbackOutcome = 'accepted' | 'invalid' | 'throttled';

export interface UpstreamCallbacksOptions {
  videos: Pick<VideoRepository, 'pollSoon'>;
  tokens: CallbackTokens;
  /** UPSTREAM_CALLBACK_BASE_URL. */
  baseUrl: string;
  clock: Clock;
  /** Tells the poller a video was made due (it claims now, or re-polls after a poll in flight). */
  hint: (videoId: string, madeDue: boolean) => void;
  logger: Logger;
  /**
   * Valid callbacks acted on per second, all videos together (the route's own global cap; the upstream's retries
   * and the safety-net polls cover what is refused). Default 200.
   */
  maxPerSecond?: number;
  onReceived?: (outcome: CallbackOutcome) => void;
  /** A callback moved a video's next poll earlier. */
  onPollScheduled?: () => void;
}

export interface UpstreamCallbacks {
  /** The `callback_url` to pass upstream for a video. */
  urlFor(videoId: string): string;
  /** Handles one callback by its token. Invalid tokens cost no store access and no upstream call. */
  receive(token: string): Promise<CallbackOutcome>;
}

/** Remembered videos beyond which expired entries are swept (the global cap keeps the live ones far fewer). */
const sweepAbove = 10_000;

export function createUpstreamCallbacks(options: UpstreamCallbacksOptions): UpstreamCallbacks {
  const { videos, tokens, clock, logger } = options;
  const maxPerSecond = options.maxPerSecond ?? 200;
  /** Video id → when its last callback-made poll was set for (this process; each replica keeps its own). */
  const lastPollAt = new Map<string, number>();
  let windowStart = Number.NEGATIVE_INFINITY;
  let inWindow = 0;

  const sweep = (now: number): void => {
    if (lastPollAt.size <= sweepAbove) return;
    for (const [id, at] of lastPollAt) if (at + callbackPollWindowMs <= now) lastPollAt.delete(id);
    // Still too many (a flood of valid tokens): forget the oldest; at worst one more extra poll each.
    for (const id of lastPollAt.keys()) {
      if (lastPollAt.size <= sweepAbove) break;
      lastPollAt.delete(id);
    }
  };

  const outcome = (result: CallbackOutcome): CallbackOutcome => {
    options.onReceived?.(result);
    return result;
  };

  return {
    urlFor: (videoId) => callbackUrl(options.baseUrl, tokens.issue(videoId)),

    async receive(token) {
      const videoId = tokens.verify(token);
      if (videoId === undefined) return outcome('invalid');
      const now = clock.now();
      const at = callbackPollAt(lastPollAt.get(videoId), now);
      // A poll after now is already set: it will see whatever this callback announces.
      if (at === null) return outcome('accepted');
      if (now >= windowStart + 1000) {
        windowStart = now;
        inWindow = 0;
      }
      if (inWindow >= maxPerSecond) return outcome('throttled');
      inWindow += 1;
      lastPollAt.delete(videoId); // re-inserted last: Map order stays oldest first for the sweep
      lastPollAt.set(videoId, at);
      sweep(now);
      let moved: boolean;
      try {
        moved = await videos.pollSoon(videoId, at);
      } catch (error) {
        lastPollAt.delete(videoId);
        throw error;
      }
      if (moved) {
        options.onPollScheduled?.();
        logger.debug({ videoId, pollAt: at }, 'upstream callback: polling the video sooner');
      }
      if (at <= now) options.hint(videoId, moved);
      return outcome('accepted');
    },
  };
}
