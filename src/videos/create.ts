import type { CreateVideoBody } from '../../schemas/video.js';
import { type Caller, owns } from '../auth/caller.js';
import type { Client } from '../auth/clients.js';
import type { Clock } from '../clock.js';
import { IdempotencyKeyInUse, IdempotencyKeyReused, ValidationFailed, VideoNotFound } from '../errors.js';
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
import { normalizeCreateBody, referencedVideoIds, toUpstreamCreateRequest } from './requests.js';

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

export interface CreateRequest {
  idempotencyKey?: string | undefined;
  requestId: string;
  /**
   * Runs once the request passed every rule, just before the paid upstream call: the create limits, so a refused
   * request (and an idempotent replay) costs no create budget. `endUserId` is the end user the video is for.
   */
  admit?: (endUserId: string | null) => Promise<void>;
}

export interface VideoCreator {
  /** POST /videos, with the Idempotency-Key protocol of DESIGN §2.1 when a key is given. */
  create(caller: Caller, body: CreateVideoBody, request: CreateRequest): Promise<CreateAnswer>;
}

/** End users own their videos, and webhooks belong to the app server (DESIGN §2.7). Throws ValidationFailed. */
function endUserOf(caller: Caller, body: CreateVideoBody): string | null {
  if (caller.kind === 'app_server') return body.endUserId ?? null;
  if (body.callbackUrl !== undefined) {
    throw new ValidationFailed('End users cannot set callbackUrl: webhooks go to the app server, which sets them with its API key.', [
      { path: '/body/callbackUrl', message: 'is not allowed with an end-user token' },
    ]);
  }
  if (body.endUserId !== undefined && body.endUserId !== caller.endUserId) {
    throw new ValidationFailed('endUserId must be the end user of the token (or left out).', [
      { path: '/body/endUserId', message: 'is not the end user of the token' },
    ]);
  }
  return caller.endUserId;
}

/**
 * Idempotency keys are scoped per client (DESIGN §2.1), and within it per end user: one end user replaying
 * another's key must never receive the other's video. An end-user id has no space, so the prefix is unambiguous.
 */
const scopedKey = (caller: Caller, key: string): string => (caller.kind === 'end_user' ? `end-user ${caller.endUserId} ${key}` : key);

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

  const resolveKeyframes = async (caller: Caller, request: VideoRequest): Promise<Map<string, string>> => {
    const upstreamIds = new Map<string, string>();
    for (const { position, videoId } of referencedVideoIds(request)) {
      const upstreamId = await videos.upstreamIdForClient(caller.client.id, videoId);
      const referenced = upstreamId === undefined ? undefined : await videos.get(videoId);
      if (upstreamId === undefined || referenced === undefined || !owns(caller, referenced) || referenced.status !== 'completed') {
        throw new ValidationFailed(`keyframes.${position}.videoId must be one of your completed videos.`, [
          { path: `/body/keyframes/${position}/videoId`, message: 'is not one of your completed videos' },
        ]);
      }
      upstreamIds.set(videoId, upstreamId);
    }
    return upstreamIds;
  };

  /** Everything a create decides before anything is stored: the checked request and the upstream's acceptance. */
  const submit = async (caller: Caller, body: CreateVideoBody, admit: CreateRequest['admit']): Promise<NewVideo> => {
    const { client } = caller;
    const endUserId = endUserOf(caller, body);
    const request = normalizeCreateBody(body);
    if (request.callbackUrl !== null && options.checkCallbackUrl !== undefined) {
      request.callbackUrl = options.checkCallbackUrl(request.callbackUrl, client);
    }
    const upstreamIds = await resolveKeyframes(caller, request);
    await admit?.(endUserId);
    const generation = await upstream.createGeneration(toUpstreamCreateRequest(request, upstreamIds));
    const now = clock.now();
    return {
      id: options.ids.videoId(),
      clientId: client.id,
      endUserId,
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
  const createFresh = async (
    caller: Caller,
    body: CreateVideoBody,
    admit: CreateRequest['admit'],
    claim?: IdempotencyClaim,
  ): Promise<StoredResponse> => {
    const { client } = caller;
    const video = await submit(caller, body, admit);
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
    caller: Caller,
    body: CreateVideoBody,
    claim: IdempotencyClaim,
    request: CreateRequest,
  ): Promise<CreateAnswer> => {
    const { client } = caller;
    const { requestId } = request;
    let response: StoredResponse;
    try {
      response = await createFresh(caller, body, request.admit, claim);
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
    async create(caller, body, request) {
      const { client } = caller;
      if (request.idempotencyKey === undefined) return { ...(await createFresh(caller, body, request.admit)), replayed: false };
      const key = scopedKey(caller, idempotencyKeyFrom(request.idempotencyKey));
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
      if (begun.started) return createOwningKey(caller, body, begun.claim, request);

      const decision = decideForExistingKey(begun.existing, fingerprint);
      switch (decision.kind) {
        case 'replay':
          return { ...decision.response, replayed: true };
        case 'in_progress':
          throw new IdempotencyKeyInUse(1);
        case 'reused':
          throw new IdempotencyKeyReused();
        case 'erased':
          throw new VideoNotFound('The video this Idempotency-Key created has been deleted.');
      }
    },
  };
}
