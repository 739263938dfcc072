import { LRUCache } from 'lru-cache';

import type { Clock } from '../clock.js';
import type { EventBus } from '../events/bus.js';
import type { VideoRecord } from '../store/records.js';
import type { VideoRepository } from '../store/repositories.js';
import { toVideoResult } from '../upstream/generation.js';
import type { UpstreamClient } from '../upstream/types.js';
import { type RenderedVideo, renderVideo } from './present.js';
import type { RenderedVideoCache } from './rendered-cache.js';

/** A download URL this close to expiry is refreshed from the upstream before it is served (DESIGN §2.3). */
export const downloadRefreshWindowMs = 5 * 60_000;
/**
 * A refresh that did not renew the URL (the upstream failed, forgot the task, or handed back a URL that expires as
 * soon) is not tried again for this video before this long: reads keep serving the stored URL meanwhile, so a client
 * polling GET never turns into one upstream call per read.
 */
const downloadRefreshRetryMs = 60_000;

export interface DownloadUrlRefresherOptions {
  videos: Pick<VideoRepository, 'refreshResult'>;
  upstream: Pick<UpstreamClient, 'getGeneration'>;
  bus: EventBus;
  clock: Clock;
  cache: RenderedVideoCache;
  /** Bound of the per-video bookkeeping (like the cache). */
  maxEntries: number;
}

export interface DownloadUrlRefresher {
  /** The rendered video's download URL expires within the refresh window and a refresh may be tried now. */
  isDue(rendered: RenderedVideo): boolean;
  /** Fetches a fresh signed URL and stores it; single-flight: one upstream call per video however many readers ask. */
  refresh(record: VideoRecord): Promise<RenderedVideo>;
}

export function createDownloadUrlRefresher(options: DownloadUrlRefresherOptions): DownloadUrlRefresher {
  const { videos, upstream, bus, clock, cache } = options;
  const refreshes = new Map<string, Promise<RenderedVideo>>();
  /** When each video's download URL was last refreshed from the upstream. */
  const lastRefreshAt = new LRUCache<string, number>({ max: options.maxEntries });

  const expiresSoon = (rendered: RenderedVideo): boolean =>
    rendered.downloadUrlExpiresAt !== null && rendered.downloadUrlExpiresAt - clock.now() <= downloadRefreshWindowMs;

  /** A refresh is in flight (join it) or none was tried for this video within the retry interval. */
  const mayRefresh = (id: string): boolean => {
    const last = lastRefreshAt.get(id);
    return refreshes.has(id) || last === undefined || clock.now() - last >= downloadRefreshRetryMs;
  };

  return {
    isDue: (rendered) => rendered.video.status === 'completed' && expiresSoon(rendered) && mayRefresh(rendered.video.id),

    refresh(record) {
      const pending = refreshes.get(record.id);
      if (pending !== undefined) return pending;
      lastRefreshAt.set(record.id, clock.now());
      const refresh = (async () => {
        try {
          const generation = await upstream.getGeneration(record.upstreamId);
          const result = toVideoResult(generation, clock.now());
          const mark = cache.mark();
          const updated = result === null ? undefined : await videos.refreshResult(record.id, clock.now(), result);
          if (updated === undefined) return renderVideo(record);
          const changedMeanwhile = cache.changedSince(mark);
          bus.publish({ video: updated });
          const rendered = renderVideo(updated);
          if (!changedMeanwhile) cache.set(rendered);
          return rendered;
        } finally {
          refreshes.delete(record.id);
        }
      })();
      refreshes.set(record.id, refresh);
      return refresh;
    },
  };
}
