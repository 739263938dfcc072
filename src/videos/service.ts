import { LRUCache } from 'lru-cache';
import type { CreateVideoBody, Video, VideoStatus } from '../../schemas/video.js';
import type { Client } from '../auth/clients.js';
import type { Clock, Random } from '../clock.js';
import type { EventBus } from '../events/bus.js';
import { ProblemError } from '../http/problems.js';
import type { IdSource } from '../ids.js';
import type { Logger } from '../lib/logger.js';
import type { IdempotencyClaim, StoredResponse, VideoRecord, VideoRequest, VideoStore } from '../store/types.js';
import { firstPollDelay, type PollScheduleOptions } from '../tracking/schedule.js';
import { terminal } from '../tracking/transitions.js';
import { toVideoResult } from '../upstream/generation.js';
import { UpstreamError, type UpstreamClient } from '../upstream/types.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { etagOf, toVideo } from './present.js';
import { normalizeCreateBody, referencedVideoIds, toUpstreamCreateRequest } from './requests.js';
import { problemFromUpstream } from '../http/problems.js';

/** A download URL this close to expiry is refreshed from the upstream before it is served (DESIGN §2.3). */
export const downloadRefreshWindowMs = 5 * 60_000;
/**
 * A refresh that did not renew the URL (the upstream failed, forgot the task, or handed back a URL that expires as
 * soon) is not tried again for this video before this long: reads keep serving the stored URL meanwhile, so a client
 * polling GET never turns into one upstream call per read.
 */
export const downloadRefreshRetryMs = 60_000;
/** Upper bound of `max-age` for terminal videos: the webhook summary still moves after completion. */
export const terminalMaxAgeSeconds = 300;

/** A video ready to send: the exact bytes, their strong ETag and caching policy. */
export interface RenderedVideo {
  clientId: string;
  video: Video;
  body: string;
  etag: string;
  terminal: boolean;
  /** Epoch ms of the signed download URL's expiry, when completed. */
  downloadUrlExpiresAt: number | null;
}

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
  store: VideoStore;
  upstream: UpstreamClient;
  bus: EventBus;
  clock: Clock;
  random: Random;
  ids: IdSource;
  logger: Logger;
  schedule: PollScheduleOptions;
  cacheMaxEntries: number;
  /** Called after a create so the poller picks the video up on time. */
  onCreated?: () => void;
  /** Checks a callback URL at request time and returns its normalised form to store; throws a ProblemError naming the field. */
  checkCallbackUrl?: (url: string, client: Client) => string;
}

/** A create that owns an Idempotency-Key: the key is completed with `response` atomically with the video's insert. */
export interface IdempotentCreate {
  claim: IdempotencyClaim;
  /** The answer to store under the key, built from the created video (pure, synchronous). */
  response: (rendered: RenderedVideo) => StoredResponse;
}

export interface VideoService {
  create(client: Client, body: CreateVideoBody, idempotency?: IdempotentCreate): Promise<RenderedVideo>;
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
}

export function createVideoService(options: VideoServiceOptions): VideoService {
  const { store, upstream, clock, logger } = options;
  const cache = new LRUCache<string, RenderedVideo>({ max: options.cacheMaxEntries });
  const refreshes = new Map<string, Promise<RenderedVideo>>();
  /** When each video's download URL was last refreshed from the upstream (bounded like the cache). */
  const lastRefreshAt = new LRUCache<string, number>({ max: options.cacheMaxEntries });
  let hits = 0;
  let misses = 0;

  /**
   * Counts published changes. A read that began before a change may hold the older row: it answers with it but
   * must not cache it, or the cache would keep serving the older body (its invalidation already ran) until the
   * video changes again.
   */
  let changesSeen = 0;
  // Any stored change (status, refreshed URL, webhook summary) invalidates the pre-serialized body.
  options.bus.subscribeAll(({ video }) => {
    changesSeen += 1;
    cache.delete(video.id);
  });

  const render = (record: VideoRecord): RenderedVideo => {
    const video = toVideo(record);
    const body = JSON.stringify(video);
    const expiresAt = video.result === null ? null : Date.parse(video.result.video.downloadUrlExpiresAt);
    return { clientId: record.clientId, video, body, etag: etagOf(body), terminal: terminal(record.status), downloadUrlExpiresAt: expiresAt };
  };

  const notFound = (): ProblemError => new ProblemError('not_found', 'No video with this id.');

  const resolveKeyframes = async (client: Client, request: VideoRequest): Promise<Map<string, string>> => {
    const upstreamIds = new Map<string, string>();
    for (const { position, videoId } of referencedVideoIds(request)) {
      const upstreamId = await store.getVideoUpstreamIdForClient(client.id, videoId);
      const referenced = upstreamId === undefined ? undefined : await store.getVideo(videoId);
      if (upstreamId === undefined || referenced?.status !== 'completed') {
        throw new ProblemError('validation_failed', `keyframes.${position}.videoId must be one of your completed videos.`, {
          errors: [{ path: `/body/keyframes/${position}/videoId`, message: 'is not one of your completed videos' }],
        });
      }
      upstreamIds.set(videoId, upstreamId);
    }
    return upstreamIds;
  };

  const withUpstreamProblems = async <T>(operation: () => Promise<T>): Promise<T> => {
    try {
      return await operation();
    } catch (error) {
      if (!(error instanceof UpstreamError)) throw error;
      throw problemFromUpstream(error);
    }
  };

  /** One upstream call per video however many readers ask at once. */
  const refreshDownloadUrl = (record: VideoRecord): Promise<RenderedVideo> => {
    const pending = refreshes.get(record.id);
    if (pending !== undefined) return pending;
    lastRefreshAt.set(record.id, clock.now());
    const refresh = (async () => {
      try {
        const generation = await withUpstreamProblems(() => upstream.getGeneration(record.upstreamId));
        const result = toVideoResult(generation, clock.now());
        const before = changesSeen;
        const updated = result === null ? undefined : await store.refreshResult(record.id, clock.now(), result);
        if (updated === undefined) return render(record);
        const changedMeanwhile = changesSeen !== before;
        options.bus.publish({ video: updated });
        const rendered = render(updated);
        if (!changedMeanwhile) cache.set(updated.id, rendered);
        return rendered;
      } finally {
        refreshes.delete(record.id);
      }
    })();
    refreshes.set(record.id, refresh);
    return refresh;
  };

  const expiresSoon = (rendered: RenderedVideo): boolean =>
    rendered.downloadUrlExpiresAt !== null && rendered.downloadUrlExpiresAt - clock.now() <= downloadRefreshWindowMs;

  /** A refresh is in flight (join it) or none was tried for this video within the retry interval. */
  const mayRefresh = (id: string): boolean => {
    const last = lastRefreshAt.get(id);
    return refreshes.has(id) || last === undefined || clock.now() - last >= downloadRefreshRetryMs;
  };

  return {
    async create(client, body, idempotency) {
      const request = normalizeCreateBody(body);
      if (request.callbackUrl !== null && options.checkCallbackUrl !== undefined) {
        request.callbackUrl = options.checkCallbackUrl(request.callbackUrl, client);
      }
      const upstreamIds = await resolveKeyframes(client, request);
      const generation = await withUpstreamProblems(() => upstream.createGeneration(toUpstreamCreateRequest(request, upstreamIds)));
      const now = clock.now();
      // Rendered once: the answer stored under the key and the one sent now are the same bytes.
      let rendered: RenderedVideo | undefined;
      const renderOnce = (inserted: VideoRecord): RenderedVideo => (rendered ??= render(inserted));
      const completesKey =
        idempotency === undefined ? undefined : { claim: idempotency.claim, response: (inserted: VideoRecord) => idempotency.response(renderOnce(inserted)) };
      const record = await store.insertVideo({
        id: options.ids.videoId(),
        clientId: client.id,
        upstreamId: generation.upstreamId,
        // The poller confirms any terminal answer; a create answer only ever says "accepted".
        status: generation.status === 'processing' ? 'processing' : 'queued',
        upstreamState: generation.state,
        request,
        estimatedWaitSeconds: generation.estimateWaitSeconds,
        result: null,
        failure: null,
        createdAt: now,
        nextPollAt: now + firstPollDelay(generation.estimateWaitSeconds, options.schedule, options.random),
      }, completesKey);
      logger.info({ videoId: record.id, upstreamId: record.upstreamId, clientId: client.id }, 'video created');
      options.onCreated?.();
      return renderOnce(record);
    },

    async read(client, id) {
      let rendered = cache.get(id);
      /** The stored row, when this read had to fetch it (a cache hit holds only the rendered body). */
      let record: VideoRecord | undefined;
      if (rendered !== undefined) hits += 1;
      else {
        misses += 1;
        const before = changesSeen;
        record = await store.getVideo(id);
        if (record === undefined || record.clientId !== client.id) throw notFound();
        rendered = render(record);
        if (rendered.terminal && changesSeen === before) cache.set(id, rendered);
      }
      if (rendered.clientId !== client.id) throw notFound();
      if (rendered.video.status === 'completed' && expiresSoon(rendered) && mayRefresh(id)) {
        record ??= await store.getVideo(id);
        const current = rendered;
        // A failed refresh still serves the stored URL: it is valid for a few more minutes.
        if (record !== undefined) {
          rendered = await refreshDownloadUrl(record).catch((error: unknown) => {
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
        throw new ProblemError('validation_failed', 'The cursor is not one this API issued; pass `nextCursor` from a previous page as is.', {
          errors: [{ path: '/querystring/cursor', message: 'is not a valid cursor' }],
        });
      }
      // One row more than asked tells whether another page follows, without a count query.
      const records = await store.listVideos(client.id, {
        ...(query.status === undefined ? {} : { status: query.status }),
        ...(beforeId === undefined ? {} : { beforeId }),
        limit: query.limit + 1,
      });
      const data = records.slice(0, query.limit).map(render);
      const last = data.at(-1);
      const nextCursor = records.length > query.limit && last !== undefined ? encodeCursor(last.video.id) : null;
      const body = `{"data":[${data.map((rendered) => rendered.body).join(',')}],"nextCursor":${JSON.stringify(nextCursor)}}`;
      return { data, nextCursor, body };
    },

    present: render,

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

    cacheStats: () => ({ size: cache.size, hits, misses }),
  };
}
