import type { Video, VideoFailure, VideoResult, VideoStatus, WebhookEventType } from '../../schemas/video.js';

/*
 * What the store holds, as plain records. Times are epoch milliseconds; nothing here is a public API shape
 * (src/videos/present.ts formats those).
 */

/** What the client asked for, normalised (defaults applied, prompt trimmed): the request fields of the public Video. */
export type VideoRequest = Pick<
  Video,
  'prompt' | 'aspectRatio' | 'loop' | 'model' | 'resolution' | 'duration' | 'keyframes' | 'callbackUrl' | 'webhookEvents' | 'metadata'
>;

/**
 * Lifecycle of one outbox row (`webhook_deliveries.status`). A claimed row keeps its status and carries a lease
 * (`lease_until`); `delivering` is allowed by the schema but not written (read as pending/retrying).
 */
export type WebhookDeliveryStatus = 'pending' | 'delivering' | 'retrying' | 'delivered' | 'failed';

/** The delivery state of a video's latest webhook event, as its outbox row holds it. */
export interface WebhookDeliveryState {
  status: WebhookDeliveryStatus;
  attempts: number;
  lastAttemptAt: number | null;
  nextAttemptAt: number | null;
  lastResponseStatus: number | null;
}

/** A stored video. */
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
  /** Row revision, bumped by every stored change: lets a replica tell a change it has already seen. */
  version: number;
  /** Delivery state of the video's latest webhook event; absent while it has none. */
  webhook?: WebhookDeliveryState;
  /**
   * Present while the create's intent is recorded but the upstream has not answered (`status` reads `queued`,
   * `upstreamId` is empty). Such a video is never polled; past the create deadline it ends `submit_interrupted`.
   */
  submitting?: true;
}

export type NewVideo = Omit<
  VideoRecord,
  'leaseUntil' | 'notFoundSince' | 'pollAttempts' | 'updatedAt' | 'completedAt' | 'version' | 'webhook' | 'submitting'
>;

/** The intent of a create, recorded before the upstream is called. */
export type NewSubmission = Pick<VideoRecord, 'id' | 'clientId' | 'request' | 'createdAt'>;

/** What the upstream's acceptance of a recorded create adds to its video. */
export interface SubmissionAccepted {
  upstreamId: string;
  status: 'queued' | 'processing';
  upstreamState: string | null;
  estimatedWaitSeconds: number | null;
  nextPollAt: number;
  now: number;
}

/** How a refused create's key ends, with the removal of its recorded intent: a stored answer, or released (null). */
export interface SubmissionKeyOutcome {
  claim: IdempotencyClaim;
  response: StoredResponse | null;
}

/** The record a new video is stored as: unpolled, unleased, unchanged since creation, no webhook yet. */
export const initialRecord = (video: NewVideo): VideoRecord => ({
  ...video,
  updatedAt: video.createdAt,
  completedAt: null,
  pollAttempts: 0,
  notFoundSince: null,
  leaseUntil: null,
  version: 1,
});

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

/** Why a video was erased: its owner deleted it, or `VIDEO_RETENTION` expired it. */
export type ErasureReason = 'deleted' | 'retention';

/**
 * What is left of an erased video (DESIGN §2.4): its id, owner and times, never its content. `version` is the
 * video's last row version plus one: the erasure is a change like any other.
 */
export interface VideoTombstone {
  id: string;
  clientId: string;
  createdAt: number;
  updatedAt: number;
  completedAt: number | null;
  deletedAt: number;
  version: number;
  reason: ErasureReason;
}

export interface ListVideosQuery {
  status?: VideoStatus;
  /** Only videos with a smaller (older) id: keyset pagination. */
  beforeId?: string;
  limit: number;
}

// ---------------------------------------------------------------------------------------------
// Idempotency keys
// ---------------------------------------------------------------------------------------------

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
  /** Set when the video this key created was erased: the key answers 404 until it expires, and nothing else. */
  erasedAt: number | null;
  /** The video its request recorded before calling the upstream; null before that (or for older keys). */
  videoId: string | null;
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

export type BeginIdempotentResult = { started: true; claim: IdempotencyClaim } | { started: false; existing: IdempotencyRecord };

/**
 * A claimed key completed in the same transaction as the insert of the video that answers it: a crash leaves
 * either both (the retry replays the video) or neither (the retry runs again), never a stored video behind a key
 * still `in_progress`, whose retry would start a second paid generation once the key is judged orphaned.
 */
export interface KeyCompletion {
  claim: IdempotencyClaim;
  response: StoredResponse;
}

// ---------------------------------------------------------------------------------------------
// Webhook deliveries (the outbox)
// ---------------------------------------------------------------------------------------------

/** How much one claim of due deliveries may take. */
export interface ClaimDeliveriesOptions {
  limit: number;
  /** A claimed delivery is reclaimable after this long, so a crash mid-attempt never strands it. */
  leaseMs: number;
  /** Receivers (`host[:port]`) already at their concurrency cap: none of their deliveries is claimed. */
  excludeHosts?: readonly string[];
  /** At most this many deliveries per receiver in one claim, so one busy receiver cannot fill the batch. */
  perHostLimit?: number;
  /**
   * The global cap: deliveries leased right now (lease not expired) by every claimer sharing the database, this
   * claim included, stay at most this many. Claims are serialized, so the cap holds across replicas.
   */
  maxInFlight?: number;
  /** The per-receiver cap, counted the same way: leased deliveries toward one `host[:port]` stay at most this many. */
  maxInFlightPerHost?: number;
}

/** An outbox row the dispatcher holds a lease on. */
export interface ClaimedDelivery {
  /** `msg_…`, the `webhook-id`. */
  messageId: string;
  videoId: string;
  clientId: string;
  eventType: WebhookEventType;
  /** The video's callback URL; null only for rows that somehow lost it (then the delivery fails). */
  targetUrl: string | null;
  /** `host[:port]` of `targetUrl`: the per-host cap's key. */
  targetHost: string | null;
  /** Attempts made so far, over every series. */
  attempts: number;
  /** Attempts made in the current retry series (a redelivery starts a new one); indexes the retry schedule. */
  attemptsInSeries: number;
  /** The body sent at the first attempt; null before it. */
  payload: string | null;
  /** When the event happened (the outbox row was written): the body's `timestamp`. */
  createdAt: number;
  /** The lease this claim holds; an attempt is recorded on the row only while the row still carries it. */
  leaseUntil: number;
}

/** What became of an outbox row after an attempt. */
export interface DeliveryNextState {
  status: 'delivered' | 'retrying' | 'failed';
  /** When to try again; null unless `retrying`. */
  nextAttemptAt: number | null;
}

/** One HTTP attempt and its consequence for the outbox row. */
export interface DeliveryAttemptResult {
  messageId: string;
  /** `ClaimedDelivery.leaseUntil` of the claim that made the attempt (fencing token). */
  leaseUntil: number;
  /** 1-based number of this attempt over every series. */
  attempt: number;
  /** Start of the attempt. */
  at: number;
  durationMs: number;
  responseStatus: number | null;
  error: string | null;
  /** The start of the receiver's answer, for operators; never shown to clients. */
  responseExcerpt: string | null;
  next: DeliveryNextState;
  now: number;
}

/** A row of `GET /videos/{id}/deliveries`. */
export interface DeliveryAttemptEntry {
  messageId: string;
  eventType: WebhookEventType;
  attempt: number;
  at: number;
  durationMs: number;
  responseStatus: number | null;
  error: string | null;
}

export type RedeliverResult =
  | { kind: 'enqueued'; video: VideoRecord; messageId: string; eventType: WebhookEventType }
  | { kind: 'not_found' }
  | { kind: 'not_terminal' }
  /** The video has no delivery of its terminal event (no callback URL, or the event is not subscribed). */
  | { kind: 'no_webhook' };
