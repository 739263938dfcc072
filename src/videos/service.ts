import type { VideoStatus } from '../../schemas/video.js';
import type { Client } from '../auth/clients.js';
import type { Clock } from '../clock.js';
import { ValidationFailed, VideoNotFound } from '../errors.js';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../lib/logger.js';
import type { VideoRecord } from '../store/records.js';
import type { VideoRepository } from '../store/repositories.js';
import type { UpstreamClient } from '../upstream/types.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { createDownloadUrlRefresher, downloadRefreshWindowMs } from './download-url-refresh.js';
import { type RenderedVideo, renderVideo } from './present.js';
import { createRenderedVideoCache } from './rendered-cache.js';

/** Upper bound of `max-age` for terminal videos: the webhook summary still moves after completion. */
const terminalMaxAgeSeconds = 300;

/** One page of GET /videos: the rendered videos, the serialized body and the cursor of the next page. */
export interface VideoPage {
  data: RenderedVideo[];
  nextCursor: string | null;
  body: string;
}

export interface ListQuery {
  status?: VideoStatus | undefined;
  cursor?: string | undefined;
  limit: number;
}

export interface VideoServiceOptions {
  videos: Pick<VideoRepository, 'get' | 'list' | 'refreshResult'>;
  /** Refreshes expiring download URLs. */
  upstream: Pick<UpstreamClient, 'getGeneration'>;
  bus: EventBus;
  clock: Clock;
  logger: Logger;
  cacheMaxEntries: number;
}

/** Reads of videos (creates: ./create.ts). */
export interface VideoService {
  /** Reads a client's own video; another client's id is not found, exactly like an unknown id. */
  read(client: Client, id: string): Promise<RenderedVideo>;
  /**
   * The client's videos, newest first, `limit` per page. Never calls the upstream (a listed download URL may be
   * close to expiry: `GET /videos/{id}` refreshes it).
   */
  list(client: Client, query: ListQuery): Promise<VideoPage>;
  /** A stored record rendered exactly as `read` serves it (change notifications: long-poll, SSE). */
  present(record: VideoRecord): RenderedVideo;
  cacheControl(rendered: RenderedVideo): string;
  cacheStats(): { size: number; hits: number; misses: number };
  /** Drops a video's cached body older than `version`: it changed on another replica (change feed). */
  evictCached(id: string, version: number): void;
  /** Drops every cached body: the change feed was lost, so any of them may be stale. */
  evictAllCached(): void;
}

export function createVideoService(options: VideoServiceOptions): VideoService {
  const { videos, clock, logger } = options;
  const cache = createRenderedVideoCache({ bus: options.bus, maxEntries: options.cacheMaxEntries });
  const downloadUrls = createDownloadUrlRefresher({ ...options, cache, maxEntries: options.cacheMaxEntries });

  return {
    async read(client, id) {
      let rendered = cache.get(id);
      /** The stored row, when this read had to fetch it (a cache hit holds only the rendered body). */
      let record: VideoRecord | undefined;
      // Ownership first, counting after: another tenant's id (cached or not) must look exactly like an unknown
      // one, metrics included, so neither is counted.
      if (rendered !== undefined && rendered.clientId !== client.id) throw new VideoNotFound();
      const hit = rendered !== undefined;
      if (rendered === undefined) {
        const mark = cache.mark();
        record = await videos.get(id);
        if (record === undefined || record.clientId !== client.id) throw new VideoNotFound();
        rendered = renderVideo(record);
        if (!cache.changedSince(mark)) cache.set(rendered);
      }
      cache.countLookup(hit);
      if (downloadUrls.isDue(rendered)) {
        record ??= await videos.get(id);
        const current = rendered;
        // A failed refresh still serves the stored URL: it is valid for a few more minutes.
        if (record !== undefined) {
          rendered = await downloadUrls.refresh(record).catch((error: unknown) => {
            logger.warn({ videoId: id, err: error }, 'download URL refresh failed; serving the stored one');
            return current;
          });
        }
      }
      return rendered;
    },

    async list(client, query) {
      const beforeId = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
      if (query.cursor !== undefined && beforeId === undefined) {
        throw new ValidationFailed('The cursor is not one this API issued; pass `nextCursor` from a previous page as is.', [
          { path: '/querystring/cursor', message: 'is not a valid cursor' },
        ]);
      }
      // One row more than asked tells whether another page follows, without a count query.
      const records = await videos.list(client.id, {
        ...(query.status === undefined ? {} : { status: query.status }),
        ...(beforeId === undefined ? {} : { beforeId }),
        limit: query.limit + 1,
      });
      const data = records.slice(0, query.limit).map(renderVideo);
      const last = data.at(-1);
      const nextCursor = records.length > query.limit && last !== undefined ? encodeCursor(last.video.id) : null;
      const body = `{"data":[${data.map((rendered) => rendered.body).join(',')}],"nextCursor":${JSON.stringify(nextCursor)}}`;
      return { data, nextCursor, body };
    },

    present: renderVideo,

    cacheControl(rendered) {
      if (!rendered.terminal) return 'private, no-cache';
      let maxAge = terminalMaxAgeSeconds;
      if (rendered.downloadUrlExpiresAt !== null) {
        // Never let a client keep a body past the point where its download URL would be refreshed.
        const untilRefresh = Math.floor((rendered.downloadUrlExpiresAt - downloadRefreshWindowMs - clock.now()) / 1000);
        maxAge = Math.max(0, Math.min(maxAge, untilRefresh));
      }
      return `private, max-age=${maxAge}`;
    },

    cacheStats: () => cache.stats(),
    evictCached: (id, version) => cache.forget(id, version),
    evictAllCached: () => cache.forgetAll(),
  };
}
