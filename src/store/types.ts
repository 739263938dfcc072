import type { Keyframes, Metadata, VideoFailure, VideoResult, VideoStatus, WebhookEventType, WebhookSummary } from '../../schemas/video.js';
import type { DeliveryStore } from './delivery-types.js';

/** What the client asked for, normalised (defaults applied, prompt trimmed). */
export interface VideoRequest {
  prompt: string;
  aspectRatio: string;
  loop: boolean;
  model: string | null;
  resolution: string | null;
  duration: string | null;
  keyframes: Keyframes | null;
  callbackUrl: string | null;
  webhookEvents: WebhookEventType[];
  metadata: Metadata | null;
}

/** A stored video. Times are epoch milliseconds. */
export interface VideoRecord {
  id: string;
  clientId: string;
  /** Never leaves the gateway except in logs. */
  upstreamId: string;
  status: VideoStatus;
  /** The last raw upstream state string, for operators. */
  upstreamState: string | null;
  request: VideoRequest;
  estimatedWaitSeconds: number | null;
  result: VideoResult | null;
  failure: VideoFailure | null;
  createdAt: number;
  updatedAt: number;
  completedAt: number | null;
  /** Polling bookkeeping. `nextPollAt` is null once terminal. */
  nextPollAt: number | null;
  pollAttempts: number;
  /** First time the upstream answered task_not_exist (grace window), null otherwise. */
  notFoundSince: number | null;
  leaseUntil: number | null;
  /** Delivery state of the video's latest webhook event (public shape); absent while it has none. */
  webhook?: WebhookSummary;
}

export type NewVideo = Omit<VideoRecord, 'leaseUntil' | 'notFoundSince' | 'pollAttempts' | 'updatedAt' | 'completedAt' | 'webhook'>;

/** A state change computed by the poller; applied atomically (with its outbox rows). */
export interface VideoTransition {
  status: VideoStatus;
  upstreamState: string | null;
  estimatedWaitSeconds: number | null;
  result: VideoResult | null;
  failure: VideoFailure | null;
}

/** An event written in the same transaction as the state change that caused it (transactional outbox). */
export interface OutboxEvent {
  messageId: string;
  eventType: WebhookEventType;
}

export interface PollReschedule {
  nextPollAt: number;
  pollAttempts: number;
  notFoundSince: number | null;
  estimatedWaitSeconds?: number | null;
  upstreamState?: string | null;
}

/**
 * Lifecycle of one outbox row (`webhook_deliveries.status`). A claimed row keeps its status and carries a lease
 * (`lease_until`); `delivering` is allowed by the schema but not written (read as pending/retrying).
 */
export type WebhookDeliveryStatus = 'pending' | 'delivering' | 'retrying' | 'delivered' | 'failed';

/** An idempotency key is `in_progress` while its first request runs, then `completed` with the stored response. */
export type IdempotencyState = 'in_progress' | 'completed';

/** A response kept under an idempotency key and replayed byte for byte. */
export interface StoredResponse {
  status: number;
  body: string;
  /** Lower-case names: `content-type`, and `location` for a created video. */
  headers: Record<string, string>;
}

export interface IdempotencyRecord {
  clientId: string;
  key: string;
  fingerprint: string;
  state: IdempotencyState;
  /** Set once `completed`. */
  response: StoredResponse | null;
  createdAt: number;
  expiresAt: number;
}

export interface BeginIdempotentRequest {
  clientId: string;
  key: string;
  fingerprint: string;
  now: number;
  expiresAt: number;
  /** An `in_progress` key begun at or before this time is orphaned and may be taken over. */
  staleBefore: number;
}

/** The handle of a request that owns its key; completing or abandoning it needs the exact claim. */
export interface IdempotencyClaim {
  clientId: string;
  key: string;
  startedAt: number;
}

/**
 * Completes a claimed key in the same transaction as the insert of the video that answers it: a crash leaves
 * either both (the retry replays the video) or neither (the retry runs again), never a stored video behind a key
 * still `in_progress`, whose retry would start a second paid generation once the key is judged orphaned.
 */
export interface IdempotentInsert {
  claim: IdempotencyClaim;
  /** The response to store, built from the inserted record. Runs inside the transaction: pure and synchronous. */
  response: (video: VideoRecord) => StoredResponse;
}

export type BeginIdempotentResult = { started: true; claim: IdempotencyClaim } | { started: false; existing: IdempotencyRecord };

export interface ListVideosQuery {
  status?: VideoStatus;
  /** Only videos with a smaller (older) id: keyset pagination. */
  beforeId?: string;
  limit: number;
}

export interface VideoStore extends DeliveryStore {
  /** Inserts a new video; with `idempotency`, also completes its claimed key in the same transaction. */
  insertVideo(video: NewVideo, idempotency?: IdempotentInsert): Promise<VideoRecord>;
  getVideo(id: string): Promise<VideoRecord | undefined>;
  /**
   * Claims up to `limit` running videos whose `nextPollAt <= now` and whose lease is free or expired,
   * setting `leaseUntil = now + leaseMs`. Two pollers never claim the same row.
   */
  claimDueVideos(now: number, limit: number, leaseMs: number): Promise<VideoRecord[]>;
  /**
   * Applies a transition to a non-terminal video and writes its outbox events in one transaction;
   * releases the lease. Returns the updated record, or undefined when the video was already terminal
   * (terminal states never change).
   */
  applyTransition(
    id: string,
    now: number,
    transition: VideoTransition,
    nextPollAt: number | null,
    events: OutboxEvent[],
    /** When given, the change applies only if the video still has this status (compare-and-set). */
    expectedStatus?: VideoStatus,
  ): Promise<VideoRecord | undefined>;
  /** Records a poll that changed nothing visible; releases the lease. */
  reschedulePoll(id: string, now: number, schedule: PollReschedule): Promise<void>;
  /** Replaces the result of a completed video (fresh signed download URL). */
  refreshResult(id: string, now: number, result: VideoResult): Promise<VideoRecord | undefined>;
  /** A client's videos, newest first (ids are time-sortable). */
  listVideos(clientId: string, query: ListVideosQuery): Promise<VideoRecord[]>;
  /**
   * Atomically claims `(clientId, key)` for a new request: inserts an `in_progress` row, or takes over a row
   * that expired or whose request was orphaned. Otherwise returns the existing row untouched.
   */
  beginIdempotentRequest(request: BeginIdempotentRequest): Promise<BeginIdempotentResult>;
  /** Stores the final response of a claimed key (no-op when the claim was lost). */
  completeIdempotentRequest(claim: IdempotencyClaim, response: StoredResponse): Promise<void>;
  /** Releases a claimed key without a stored response, so a retry runs again. */
  abandonIdempotentRequest(claim: IdempotencyClaim): Promise<void>;
  /** Deletes keys whose retention ended; returns how many. */
  pruneIdempotencyKeys(now: number): Promise<number>;
  /** Number of videos still running (queued or processing), for metrics. */
  countRunning(): Promise<number>;
  /**
   * The upstream id of one of the caller's own videos (keyframe `videoId` → upstream `generation` id);
   * undefined when the video is unknown or belongs to another client.
   */
  getVideoUpstreamIdForClient(clientId: string, videoId: string): Promise<string | undefined>;
  /** Cheap liveness check for /readyz. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
