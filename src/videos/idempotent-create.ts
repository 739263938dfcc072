import type { CreateVideoBody } from '../../schemas/video.js';
import type { Client } from '../auth/clients.js';
import type { Clock } from '../clock.js';
import { buildProblem, problemContentType, ProblemError } from '../http/problems.js';
import type { Logger } from '../lib/logger.js';
import type { IdempotencyClaim, StoredResponse, VideoStore } from '../store/types.js';
import type { CancelTimer, Timers } from '../timers.js';
import {
  decideForExistingKey,
  idempotencyInProgressTimeoutMs,
  idempotencyKeyFrom,
  idempotencyRetentionMs,
  isStoredOutcome,
  requestFingerprint,
} from './idempotency.js';
import type { RenderedVideo, VideoService } from './service.js';

/** An HTTP answer to a create, fresh or replayed: the route sends it as is. */
export interface CreateAnswer extends StoredResponse {
  /** True when it is the stored answer of an earlier request with the same Idempotency-Key. */
  replayed: boolean;
}

export interface VideoCreatorOptions {
  videos: Pick<VideoService, 'create'>;
  store: VideoStore;
  clock: Clock;
  timers: Timers;
  logger: Logger;
  retentionMs?: number;
  inProgressTimeoutMs?: number;
  /** How often expired keys are deleted while workers run. */
  pruneEveryMs?: number;
}

export interface VideoCreator {
  /** POST /videos, with the Idempotency-Key protocol of DESIGN §2.1 when a key is given. */
  create(client: Client, body: CreateVideoBody, request: { idempotencyKey?: string | undefined; requestId: string }): Promise<CreateAnswer>;
  /** Deletes keys past their 24 h retention; returns how many. */
  pruneExpiredKeys(): Promise<number>;
  startPruning(): void;
  stopPruning(): void;
}

const jsonContentType = 'application/json; charset=utf-8';

export function createVideoCreator(options: VideoCreatorOptions): VideoCreator {
  const { videos, store, clock, logger } = options;
  const retentionMs = options.retentionMs ?? idempotencyRetentionMs;
  const inProgressTimeoutMs = options.inProgressTimeoutMs ?? idempotencyInProgressTimeoutMs;
  let stopPruneTimer: CancelTimer | null = null;

  const createdResponse = (rendered: RenderedVideo): StoredResponse => ({
    status: 202,
    body: rendered.body,
    headers: { 'content-type': jsonContentType, location: `/videos/${rendered.video.id}` },
  });

  /** With a claim, the key is completed with the 202 in the same transaction that stores the video. */
  const createFresh = async (client: Client, body: CreateVideoBody, claim?: IdempotencyClaim): Promise<StoredResponse> =>
    createdResponse(await videos.create(client, body, claim === undefined ? undefined : { claim, response: createdResponse }));

  /** Runs the create that owns the key: a stored video completes it; a failure stores its final answer or releases it. */
  const createOwningKey = async (client: Client, body: CreateVideoBody, claim: IdempotencyClaim, requestId: string): Promise<CreateAnswer> => {
    let response: StoredResponse;
    try {
      response = await createFresh(client, body, claim);
    } catch (error) {
      if (error instanceof ProblemError && isStoredOutcome(error)) {
        const problemBody = JSON.stringify(buildProblem(error, requestId));
        await store.completeIdempotentRequest(claim, { status: error.status, body: problemBody, headers: { 'content-type': `${problemContentType}; charset=utf-8` } });
      } else {
        if (error instanceof ProblemError && error.code === 'upstream_timeout') {
          logger.warn({ clientId: client.id, requestId }, 'create timed out under an Idempotency-Key; the key is released, so a retry may start a second generation');
        }
        await store.abandonIdempotentRequest(claim).catch((abandonError: unknown) =>
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
      const begun = await store.beginIdempotentRequest({
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
          throw new ProblemError('idempotency_key_in_use', 'A request with this Idempotency-Key is still running; retry shortly to get its response.', {
            headers: { 'retry-after': '1' },
          });
        case 'reused':
          throw new ProblemError('idempotency_key_reused', 'This Idempotency-Key was already used with a different request body; use a new key for a new request.', {
            errors: [{ path: '/headers/idempotency-key', message: 'was already used with a different request body' }],
          });
      }
    },

    async pruneExpiredKeys() {
      return store.pruneIdempotencyKeys(clock.now());
    },

    startPruning() {
      if (stopPruneTimer !== null) return;
      stopPruneTimer = options.timers.setInterval(() => {
        store
          .pruneIdempotencyKeys(clock.now())
          .then((deleted) => {
            if (deleted > 0) logger.debug({ deleted }, 'pruned expired idempotency keys');
          })
          .catch((error: unknown) => logger.warn({ err: error }, 'pruning idempotency keys failed; retrying later'));
      }, options.pruneEveryMs ?? 10 * 60_000);
    },

    stopPruning() {
      stopPruneTimer?.();
      stopPruneTimer = null;
    },
  };
}
