import type { CreateVideoBody } from '../../schemas/video.js';
import type { Client } from '../auth/clients.js';
import type { Clock } from '../clock.js';
import { IdempotencyKeyInUse, IdempotencyKeyReused, ValidationFailed, VideoNotFound } from '../errors.js';
import type { IdSource } from '../ids.js';
import type { Logger } from '../lib/logger.js';
import { eventForStatus } from '../lifecycle.js';
import {
  type IdempotencyClaim,
  type IdempotencyRecord,
  initialRecord,
  type OutboxEvent,
  type StoredResponse,
  type SubmissionAccepted,
  type VideoRecord,
  type VideoRequest,
} from '../store/records.js';
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
  videos: Pick<
    VideoRepository,
    'get' | 'upstreamIdForClient' | 'recordSubmission' | 'acceptSubmission' | 'discardSubmission' | 'staleSubmissions' | 'failSubmission'
  >;
  keys: Pick<IdempotencyRepository, 'begin' | 'complete' | 'abandon' | 'completeForVideo'>;
  upstream: Pick<UpstreamClient, 'createGeneration'>;
  clock: Clock;
  ids: Pick<IdSource, 'videoId' | 'messageId'>;
  logger: Logger;
  /** When a just-created video is first polled (the schedule belongs to src/tracking). */
  firstPollAt: (now: number, estimateWaitSeconds: number | null) => number;
  /** The answer stored under a key for a final refusal (`isStoredOutcome`): the HTTP layer's problem response. */
  renderRefusal: (error: UpstreamError, requestId: string) => StoredResponse;
  /** Checks a callback URL at request time and returns its normalised form to store; throws ValidationFailed. */
  checkCallbackUrl?: (url: string, client: Client) => string;
  /** Refuses a keyframe image URL pointing at a private or local address; throws ValidationFailed. */
  checkImageUrl?: (url: string, position: 'start' | 'end') => void;
  /** The upstream `callback_url` for a video id (DESIGN §4.1); unset → none is passed. */
  upstreamCallbackUrl?: (videoId: string) => string;
  /** Called after a create so the poller picks the video up on time. */
  onCreated?: () => void;
  retentionMs?: number;
  inProgressTimeoutMs?: number;
  /**
   * A video still `submitting` this long after its intent was recorded belongs to a create that can no longer be
   * running (the longest create is 25 s): it ends `submit_interrupted`. Default `idempotencyInProgressTimeoutMs`.
   */
  submitDeadlineMs?: number;
}

export interface VideoCreator {
  /** POST /videos, with the Idempotency-Key protocol of DESIGN §2.1 when a key is given. */
  create(client: Client, body: CreateVideoBody, request: { idempotencyKey?: string | undefined; requestId: string }): Promise<CreateAnswer>;
  /** Ends every video still `submitting` past the create deadline as `submit_interrupted`; returns how many. */
  recoverInterrupted(): Promise<number>;
}

/** What a client reads about a create the gateway lost track of mid-flight (DESIGN §2.2 `failure`). */
export const submitInterruptedFailure = {
  code: 'submit_interrupted',
  message:
    'The gateway stopped while submitting this video; the upstream may have started a generation. Create it again if you still want it.',
} as const;

const jsonContentType = 'application/json; charset=utf-8';

const createdResponse = (rendered: RenderedVideo): StoredResponse => ({
  status: 202,
  body: rendered.body,
  headers: { 'content-type': jsonContentType, location: `/videos/${rendered.video.id}` },
});

/**
 * The one create path. Its order keeps every paid generation findable and bought once:
 * 1. check the request (nothing stored yet; a refusal costs nothing);
 * 2. record the intent: the video in status `submitting`, linked to its Idempotency-Key, in one transaction; if the
 *    store cannot take it, the answer is 503 `store_unavailable` and the upstream is never called;
 * 3. call the upstream; log its task id with the video id first thing;
 * 4. store the acceptance (and the key's answer) in one transaction.
 * A crash after 2 leaves a `submitting` video whose key is never taken over: past the create deadline it ends
 * `failed` / `submit_interrupted` and the key replays that video, so a retry never starts a second generation.
 */
export function createVideoCreator(options: VideoCreatorOptions): VideoCreator {
  const { videos, keys, upstream, clock, logger } = options;
  const retentionMs = options.retentionMs ?? idempotencyRetentionMs;
  const inProgressTimeoutMs = options.inProgressTimeoutMs ?? idempotencyInProgressTimeoutMs;
  const submitDeadlineMs = options.submitDeadlineMs ?? idempotencyInProgressTimeoutMs;

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

  interface Recorded {
    id: string;
    createdAt: number;
    request: VideoRequest;
    upstreamIds: Map<string, string>;
  }

  /** Steps 1 and 2: the checked request, recorded as a `submitting` video (linked to `claim`). */
  const checkAndRecord = async (client: Client, body: CreateVideoBody, claim?: IdempotencyClaim): Promise<Recorded> => {
    const request = normalizeCreateBody(body);
    if (request.callbackUrl !== null && options.checkCallbackUrl !== undefined) {
      request.callbackUrl = options.checkCallbackUrl(request.callbackUrl, client);
    }
    for (const position of ['start', 'end'] as const) {
      const frame = request.keyframes?.[position];
      if (frame !== undefined && 'imageUrl' in frame) options.checkImageUrl?.(frame.imageUrl, position);
    }
    const upstreamIds = await resolveKeyframes(client, request);
    const recorded: Recorded = { id: options.ids.videoId(), createdAt: clock.now(), request, upstreamIds };
    const held = await videos.recordSubmission({ id: recorded.id, clientId: client.id, request, createdAt: recorded.createdAt }, claim);
    // Only a claim judged orphaned and taken over by a newer request is lost: that one answers the key.
    if (!held) throw new IdempotencyKeyInUse(1);
    return recorded;
  };

  /** Steps 3 and 4. A refusal removes the intent and settles the key in one transaction. */
  const submitRecorded = async (
    client: Client,
    recorded: Recorded,
    claim: IdempotencyClaim | undefined,
    requestId: string,
  ): Promise<StoredResponse> => {
    let generation;
    try {
      const upstreamRequest = toUpstreamCreateRequest(recorded.request, recorded.upstreamIds);
      // The id was made with the intent: the upstream callback URL names it.
      if (options.upstreamCallbackUrl !== undefined) upstreamRequest.callback_url = options.upstreamCallbackUrl(recorded.id);
      generation = await upstream.createGeneration(upstreamRequest);
    } catch (error) {
      const stored = error instanceof UpstreamError && isStoredOutcome(error) ? options.renderRefusal(error, requestId) : null;
      if (claim !== undefined && error instanceof UpstreamError && error.kind === 'timeout') {
        logger.warn(
          { clientId: client.id, requestId, videoId: recorded.id },
          'create timed out under an Idempotency-Key; the key is released, so a retry may start a second generation',
        );
      }
      await videos
        .discardSubmission(recorded.id, claim === undefined ? undefined : { claim, response: stored })
        .catch((discardError: unknown) =>
          logger.error(
            { err: discardError, clientId: client.id, videoId: recorded.id },
            'could not remove a refused create; it ends submit_interrupted past the create deadline',
          ),
        );
      throw error;
    }
    // Before anything else can fail: the only place the upstream task id is known is this line and the store.
    logger.info({ videoId: recorded.id, upstreamId: generation.upstreamId, clientId: client.id }, 'upstream accepted the create');
    const now = clock.now();
    const accepted: SubmissionAccepted = {
      upstreamId: generation.upstreamId,
      // The poller confirms any terminal answer; a create answer only ever says "accepted".
      status: generation.status === 'processing' ? 'processing' : 'queued',
      upstreamState: generation.state,
      estimatedWaitSeconds: generation.estimateWaitSeconds,
      nextPollAt: options.firstPollAt(now, generation.estimateWaitSeconds),
      now,
    };
    // Rendered once, from the record as it will be stored: the answer kept under the key and the one sent now are
    // the same bytes.
    const expected: VideoRecord = {
      ...initialRecord({
        id: recorded.id,
        clientId: client.id,
        upstreamId: accepted.upstreamId,
        status: accepted.status,
        upstreamState: accepted.upstreamState,
        request: recorded.request,
        estimatedWaitSeconds: accepted.estimatedWaitSeconds,
        result: null,
        failure: null,
        createdAt: recorded.createdAt,
        nextPollAt: accepted.nextPollAt,
      }),
      updatedAt: now,
      version: 2,
    };
    const response = createdResponse(renderVideo(expected));
    let stored: VideoRecord | undefined;
    try {
      stored = await videos.acceptSubmission(recorded.id, accepted, claim === undefined ? undefined : { claim, response });
    } catch (error) {
      logger.error(
        { err: error, videoId: recorded.id, upstreamId: generation.upstreamId, clientId: client.id },
        'the upstream accepted a create the store could not record; the video ends submit_interrupted',
      );
      throw error;
    }
    if (stored === undefined) {
      // Declared interrupted while the upstream was still answering (slower than the create deadline).
      logger.error(
        { videoId: recorded.id, upstreamId: generation.upstreamId, clientId: client.id },
        'the upstream accepted a create already ended submit_interrupted; its generation is not tracked',
      );
      const current = await videos.get(recorded.id);
      if (current === undefined) throw new IdempotencyKeyInUse(1);
      return createdResponse(renderVideo(current));
    }
    logger.info({ videoId: recorded.id, upstreamId: generation.upstreamId, clientId: client.id }, 'video created');
    options.onCreated?.();
    return response;
  };

  /** Runs the create that owns the key. Until the intent is recorded a failure releases the key; after, it never does. */
  const createOwningKey = async (
    client: Client,
    body: CreateVideoBody,
    claim: IdempotencyClaim,
    requestId: string,
  ): Promise<CreateAnswer> => {
    let recorded: Recorded;
    try {
      recorded = await checkAndRecord(client, body, claim);
    } catch (error) {
      await keys
        .abandon(claim)
        .catch((abandonError: unknown) =>
          logger.error({ err: abandonError, clientId: client.id }, 'could not release an idempotency key; it frees itself when orphaned'),
        );
      throw error;
    }
    return { ...(await submitRecorded(client, recorded, claim, requestId)), replayed: false };
  };

  const failedEvents = (video: VideoRecord): OutboxEvent[] => {
    const eventType = eventForStatus.failed;
    if (video.request.callbackUrl === null || eventType === null || !video.request.webhookEvents.includes(eventType)) return [];
    return [{ messageId: options.ids.messageId(), eventType }];
  };

  /** Ends a `submitting` video past the deadline; returns the video as it now is. */
  const interrupt = async (video: VideoRecord, now: number): Promise<VideoRecord | undefined> => {
    const failed = await videos.failSubmission(video.id, now, { ...submitInterruptedFailure }, failedEvents(video));
    if (failed !== undefined) {
      logger.warn(
        { videoId: video.id, clientId: video.clientId, submittedAt: new Date(video.createdAt).toISOString() },
        'a create was interrupted while submitting (the gateway stopped); the video ends submit_interrupted',
      );
    }
    return failed ?? (await videos.get(video.id));
  };

  /**
   * A retry of a key whose request recorded a video: answered with that video once its create cannot be running any
   * more (never a second generation); undefined while it may still be (409).
   */
  const answerLinkedKey = async (existing: IdempotencyRecord, videoId: string): Promise<StoredResponse | undefined> => {
    const now = clock.now();
    let video = await videos.get(videoId);
    if (video?.submitting === true) {
      if (video.createdAt > now - submitDeadlineMs) return undefined;
      video = await interrupt(video, now);
    }
    if (video === undefined || video.submitting === true) return undefined;
    const response = createdResponse(renderVideo(video));
    await keys.complete({ clientId: existing.clientId, key: existing.key, startedAt: existing.createdAt }, response);
    return response;
  };

  return {
    async create(client, body, request) {
      if (request.idempotencyKey === undefined) {
        const recorded = await checkAndRecord(client, body);
        return { ...(await submitRecorded(client, recorded, undefined, request.requestId)), replayed: false };
      }
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
        case 'in_progress': {
          const linked = begun.existing.videoId;
          const answer = linked === null ? undefined : await answerLinkedKey(begun.existing, linked);
          if (answer !== undefined) return { ...answer, replayed: true };
          throw new IdempotencyKeyInUse(1);
        }
        case 'reused':
          throw new IdempotencyKeyReused();
        case 'erased':
          throw new VideoNotFound('The video this Idempotency-Key created has been deleted.');
      }
    },

    async recoverInterrupted() {
      const now = clock.now();
      let ended = 0;
      for (const video of await videos.staleSubmissions(now - submitDeadlineMs, 100)) {
        const current = await interrupt(video, now);
        if (current === undefined || current.submitting === true) continue;
        ended += 1;
        await keys.completeForVideo(video.id, createdResponse(renderVideo(current)));
      }
      return ended;
    },
  };
}
