import type { VideoFailure, VideoResult, VideoStatus } from '../../schemas/video.js';
import type {
  BeginIdempotentRequest,
  BeginIdempotentResult,
  ClaimDeliveriesOptions,
  ClaimedDelivery,
  DeliveryAttemptEntry,
  DeliveryAttemptResult,
  IdempotencyClaim,
  KeyCompletion,
  ListVideosQuery,
  NewSubmission,
  NewVideo,
  OutboxEvent,
  PollReschedule,
  RedeliverResult,
  StoredResponse,
  SubmissionAccepted,
  SubmissionKeyOutcome,
  VideoRecord,
  VideoTombstone,
  VideoTransition,
} from './records.js';

/*
 * The store, one repository per job (DESIGN §4). Asynchronous and dialect-neutral: services take the one
 * repository they use, or a `Pick<>` of it. Every time is passed in by the caller (epoch ms).
 */

/** Videos: creation, reads, and the poller's claims and state changes. */
export interface VideoRepository {
  /**
   * Stores a new video as `initialRecord(video)` and returns it; with `completesKey`, also completes that claimed
   * idempotency key with its answer in the same transaction (a lost claim is left alone; the video is kept).
   */
  insert(video: NewVideo, completesKey?: KeyCompletion): Promise<VideoRecord>;
  /**
   * Records a create's intent before the upstream is called: the video in status `submitting` and, with `claim`, the
   * key linked to it, in one transaction. False (nothing stored) when the claim was lost.
   */
  recordSubmission(video: NewSubmission, claim?: IdempotencyClaim): Promise<boolean>;
  /**
   * Stores the upstream's acceptance of a `submitting` video (it becomes `queued`/`processing` with its upstream id)
   * and, with `completesKey`, that key's answer, in one transaction. Undefined when the video is no longer submitting.
   */
  acceptSubmission(id: string, accepted: SubmissionAccepted, completesKey?: KeyCompletion): Promise<VideoRecord | undefined>;
  /** Removes a `submitting` video the upstream refused, and settles its key, in one transaction. */
  discardSubmission(id: string, key?: SubmissionKeyOutcome): Promise<void>;
  /** Videos still `submitting` that were recorded at or before `recordedBefore`, oldest first. */
  staleSubmissions(recordedBefore: number, limit: number): Promise<VideoRecord[]>;
  /**
   * Ends a `submitting` video as failed (compare-and-set on that status) with its outbox events, in one transaction.
   * Undefined when the video is no longer submitting.
   */
  failSubmission(id: string, now: number, failure: VideoFailure, events: OutboxEvent[]): Promise<VideoRecord | undefined>;
  get(id: string): Promise<VideoRecord | undefined>;
  /** A client's videos, newest first (ids are time-sortable). */
  list(clientId: string, query: ListVideosQuery): Promise<VideoRecord[]>;
  /**
   * The upstream id of one of the caller's own videos (keyframe `videoId` → upstream `generation` id);
   * undefined when the video is unknown or belongs to another client.
   */
  upstreamIdForClient(clientId: string, videoId: string): Promise<string | undefined>;
  /**
   * Claims up to `limit` running videos whose `nextPollAt <= now` and whose lease is free or expired,
   * setting `leaseUntil = now + leaseMs`; most overdue first. Two pollers never claim the same row.
   */
  claimDue(now: number, limit: number, leaseMs: number): Promise<VideoRecord[]>;
  /**
   * Applies a transition to a running video and writes its outbox events in one transaction; releases the lease.
   * Returns the updated record, or undefined when the video was already terminal (terminal states never change).
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
  /**
   * Makes a running video due for a poll at `at` when its next poll was later (an upstream callback's hint, DESIGN
   * §4.1); nothing a client sees changes. Returns false, writing nothing, for a terminal, erased or unknown video
   * or one already due by then.
   */
  pollSoon(id: string, at: number): Promise<boolean>;
  /** Records a poll that changed nothing visible; releases the lease. */
  reschedulePoll(id: string, now: number, schedule: PollReschedule): Promise<void>;
  /** Replaces the result of a completed video (fresh signed download URL). */
  refreshResult(id: string, now: number, result: VideoResult): Promise<VideoRecord | undefined>;
  /** Number of videos still running (queued or processing), for metrics. */
  countRunning(): Promise<number>;
  /**
   * Erases one of a client's videos (DESIGN §2.4), in one transaction: the video row, its outbox rows (pending ones
   * are never sent) and attempt log are deleted, the idempotency key that created it is emptied and marked erased,
   * and a tombstone keeps its id, owner and times. Returns the tombstone, or undefined when the video is unknown,
   * another client's or already erased.
   */
  erase(
    clientId: string,
    id: string,
    now: number,
    /** An end user's delete: only its own video. */ endUserId?: string,
  ): Promise<VideoTombstone | undefined>;
  /**
   * Erases, as `erase` does, up to `limit` terminal videos completed at or before `completedBefore`, oldest first
   * (`VIDEO_RETENTION`); running videos are never touched. Returns their tombstones.
   */
  eraseTerminalBefore(completedBefore: number, limit: number, now: number): Promise<VideoTombstone[]>;
  /** The tombstone of an erased video (another replica's DELETE reaching this one's waiters), or undefined. */
  tombstone(id: string): Promise<VideoTombstone | undefined>;
}

/** The outbox (DESIGN §3): the dispatcher's claims and records, the delivery log, redelivery. */
export interface DeliveryRepository {
  /**
   * Claims deliveries that are due (`pending` or `retrying`, `next_attempt_at <= now`, lease free or expired),
   * most overdue first, and leases them until `now + leaseMs`. Two dispatchers never claim the same row.
   */
  claimDue(now: number, options: ClaimDeliveriesOptions): Promise<ClaimedDelivery[]>;
  /**
   * Stores the body of a delivery's first attempt unless one is stored already; returns the stored body, or
   * undefined when the delivery is gone (its video was erased meanwhile: nothing may be sent).
   */
  snapshotPayload(messageId: string, payload: string): Promise<string | undefined>;
  /**
   * Logs the attempt and, while the row still carries the claim's lease, applies its outcome and refreshes the
   * video's webhook state, all in one transaction. Returns the updated video, or undefined when the lease was
   * lost (a redelivery or another dispatcher took the row over: only the log entry is written).
   */
  recordAttempt(result: DeliveryAttemptResult): Promise<VideoRecord | undefined>;
  /** `recordAttempt` for several attempts in one transaction, in order: one answer per attempt. */
  recordAttempts(results: readonly DeliveryAttemptResult[]): Promise<Array<VideoRecord | undefined>>;
  /** Gives a claimed delivery back without an attempt (shutdown): due again at once. */
  release(messageId: string, leaseUntil: number): Promise<void>;
  /** A video's attempts, newest first. */
  listAttempts(videoId: string, limit: number): Promise<DeliveryAttemptEntry[]>;
  /**
   * Enqueues the terminal event of a terminal video again (same message id, same body, a fresh retry series),
   * due at `now`.
   */
  redeliver(videoId: string, now: number): Promise<RedeliverResult>;
}

/** Idempotency keys of `POST /videos` (DESIGN §2.1). */
export interface IdempotencyRepository {
  /**
   * Atomically claims `(clientId, key)` for a new request: inserts an `in_progress` row, or takes over a row
   * that expired or whose request was orphaned. Otherwise returns the existing row untouched.
   */
  begin(request: BeginIdempotentRequest): Promise<BeginIdempotentResult>;
  /** Stores the final response of a claimed key (no-op when the claim was lost). */
  complete(claim: IdempotencyClaim, response: StoredResponse): Promise<void>;
  /** Stores the final response of the `in_progress` key linked to a video, if any (an interrupted create's answer). */
  completeForVideo(videoId: string, response: StoredResponse): Promise<void>;
  /** Releases a claimed key without a stored response, so a retry runs again. */
  abandon(claim: IdempotencyClaim): Promise<void>;
  /** Deletes keys whose retention ended; returns how many. */
  prune(now: number): Promise<number>;
}

/** One database: its repositories, a liveness check and its lifetime. */
export interface Store {
  readonly videos: VideoRepository;
  readonly deliveries: DeliveryRepository;
  readonly idempotencyKeys: IdempotencyRepository;
  /** Cheap liveness check for /readyz. */
  ping(): Promise<void>;
  /** Proves the store takes writes: one upsert of a `store_heartbeat` row (throttled by its caller). */
  heartbeat(now: number): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
}
