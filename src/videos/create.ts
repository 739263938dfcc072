import type { CreateVideoBody } from '../../schemas/video.js';
import type { Client } from '../auth/clients.js';
import type { Clock } from '../clock.js';
import { IdempotencyKeyInUse, IdempotencyKeyReused, ValidationFailed } from '../errors.js';
import type { IdSource } from '../ids.js';
import type { Logger } from '../lib/logger.js';
import { type IdempotencyClaim, initialRecord, type NewVideo, type StoredResponse, type VideoRequest } from '../store/records.js';
import type { IdempotencyRepository, VideoRepository } from '../store/repositories.js';
import { type UpstreamClient, UpstreamError } from '../upstream/types.js';
import {
  decideForExistingKey,
  idempotencyInProgressTimeoutMs,
  idempotencyKeyFrom,
  idempotencyRetentionMs,
  isStoredOutcome,
  requestFingerprint,
} from './idempotency.js';
import { type RenderedVideo, renderVideo } from './present.js';
import { normalizeCreateBody, referencedVideoIds, toUpstreamCreateRequest, withEffectiveSettings } from './requests.js';

/** An HTTP answer to a create, fresh or replayed: the route sends it as is. */
export interface CreateAnswer extends StoredResponse {
  /** True when it is the stored answer of an earlier request with the same Idempotency-Key. */
  replayed: boolean;
}

export interface VideoCreatorOptions {
  videos: Pick<VideoRepository, 'insert' | 'get' | 'upstreamIdForClient'>;
  keys: Pick<IdempotencyRepository, 'begin' | 'complete' | 'abandon'>;
  upstream: Pick<UpstreamClient, 'createGeneration'>;
  clock: Clock;
  ids: Pick<IdSource, 'videoId'>;
  logger: Logger;
  /** When a just-created video is first polled (the schedule belongs to src/tracking). */
  firstPollAt: (now: number, estimateWaitSeconds: number | null) => number;
  /** The answer stored under a key for a final refusal (`isStoredOutcome`): the HTTP layer's problem response. */
  renderRefusal: (error: UpstreamError, requestId: string) => StoredResponse;
  /** Checks a callback URL at request time and returns its normalised form to store; throws ValidationFailed. */
  checkCallbackUrl?: (url: string, client: Client) => string;
  /** Called after a create so the poller picks the video up on time. */
  onCreated?: () => void;
  retentionMs?: number;
  inProgressTimeoutMs?: number;
}

export interface VideoCreator {
  /** POST /videos, with the Idempotency-Key protocol of DESIGN §2.1 when a key is given. */
  create(client: Client, body: CreateVideoBody, request: { idempotencyKey?: string | undefined; requestId: string }): Promise<CreateAnswer>;
}

const jsonContentType = 'application/json; charset=utf-8';

const createdResponse = (rendered: RenderedVideo): StoredResponse => ({
  status: 202,
  body: rendered.body,
  headers: { 'content-type': jsonContentType, location: `/videos/${rendered.video.id}` },
});

/**
 * The one create path: submit to the upstream, build the video in memory, render its answer, then store the video
 * (and, under an Idempotency-Key, that same answer) in one transaction.
 */
export function createVideoCreator(options: VideoCreatorOptions): VideoCreator {
  const { videos, keys, upstream, clock, logger } = options;
  const retentionMs = options.retentionMs ?? idempotencyRetentionMs;
  const inProgressTimeoutMs = options.inProgressTimeoutMs ?? idempotencyInProgressTimeoutMs;

  const resolveKeyframes = async (client: Client, request: VideoRequest): Promise<Map<string, string>> => {
    const upstreamIds = new Map<string, string>();
    for (const { position, videoId } of referencedVideoIds(request)) {
      const upstreamId = await videos.upstreamIdForClient(client.id, videoId);
      const referenced = upstreamId === undefined ? undefined : await videos.get(videoId);
      if (upstreamId === undefined || referenced?.status !== 'completed') {
        throw new ValidationFailed(`keyframes.${position}.videoId must be one of your completed videos.`, [
          { path: `/body/keyframes/${position}/videoId`, message: 'is not one of your completed videos' },
        ]);
      }
      upstreamIds.set(videoId, upstreamId);
    }
    return upstreamIds;
  };

  /** Everything a create decides before anything is stored: the checked request and the upstream's acceptance. */
  const submit = async (client: Client, body: CreateVideoBody): Promise<NewVideo> => {
    const request = normalizeCreateBody(body);
    if (request.callbackUrl !== null && options.checkCallbackUrl !== undefined) {
      request.callbackUrl = options.checkCallbackUrl(request.callbackUrl, client);
    }
    const upstreamIds = await resolveKeyframes(client, request);
    const generation = await upstream.createGeneration(toUpstreamCreateRequest(request, upstreamIds));
    withEffectiveSettings(request, generation.settings);
    const now = clock.now();
    return {
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
      nextPollAt: options.firstPollAt(now, generation.estimateWaitSeconds),
    };
  };

  /** With a claim, the key is completed with the 202 in the same transaction that stores the video. */
  const createFresh = async (client: Client, body: CreateVideoBody, claim?: IdempotencyClaim): Promise<StoredResponse> => {
    const video = await submit(client, body);
    // Rendered once, from the record as it will be stored: the answer kept under the key and the one sent now
    // are the same bytes.
    const response = createdResponse(renderVideo(initialRecord(video)));
    await videos.insert(video, claim === undefined ? undefined : { claim, response });
    logger.info({ videoId: video.id, upstreamId: video.upstreamId, clientId: client.id }, 'video created');
    options.onCreated?.();
    return response;
  };

  /** Runs the create that owns the key: a stored video completes it; a failure stores its final answer or releases it. */
  const createOwningKey = async (
    client: Client,
    body: CreateVideoBody,
    claim: IdempotencyClaim,
    requestId: string,
  ): Promise<CreateAnswer> => {
    let response: StoredResponse;
    try {
      response = await createFresh(client, body, claim);
    } catch (error) {
      if (error instanceof UpstreamError && isStoredOutcome(error)) {
        await keys.complete(claim, options.renderRefusal(error, requestId));
      } else {
        if (error instanceof UpstreamError && error.kind === 'timeout') {
          logger.warn(
            { clientId: client.id, requestId },
            'create timed out under an Idempotency-Key; the key is released, so a retry may start a second generation',
          );
        }
        await keys
          .abandon(claim)
          .catch((abandonError: unknown) =>
            logger.error({ err: abandonError, clientId: client.id }, 'could not release an idempotency key; it frees itself when orphaned'),
          );
      }
      throw error;
    }
    // Already stored under the key: the video's insert completed it in the same transaction.
    return { ...response, replayed: false };
  };

  return {
    async create(client, body, request) {
      if (request.idempotencyKey === undefined) return { ...(await createFresh(client, body)), replayed: false };
      const key = idempotencyKeyFrom(request.idempotencyKey);
      const fingerprint = requestFingerprint('POST', '/videos', body);
      const now = clock.now();
      const begun = await keys.begin({
        clientId: client.id,
        key,
        fingerprint,
        now,
        expiresAt: now + retentionMs,
        staleBefore: now - inProgressTimeoutMs,
      });
      if (begun.started) return createOwningKey(client, body, begun.claim, request.requestId);

      const decision = decideForExistingKey(begun.existing, fingerprint);
      switch (decision.kind) {
        case 'replay':
          return { ...decision.response, replayed: true };
        case 'in_progress':
          throw new IdempotencyKeyInUse(1);
        case 'reused':
          throw new IdempotencyKeyReused();
      }
    },
  };
}
