import type { Keyframes, Metadata, VideoFailure, VideoResult, VideoStatus, WebhookEventType } from '../../schemas/video.js';

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
}

export type NewVideo = Omit<VideoRecord, 'leaseUntil' | 'notFoundSince' | 'pollAttempts' | 'updatedAt' | 'completedAt'>;

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

/** Lifecycle of one outbox row (`webhook_deliveries.status`); `delivering` while a dispatcher holds its lease. */
export type WebhookDeliveryStatus = 'pending' | 'delivering' | 'retrying' | 'delivered' | 'failed';

/** An idempotency key is `in_progress` while its first request runs, then `completed` with the stored response. */
export type IdempotencyState = 'in_progress' | 'completed';

export interface VideoStore {
  insertVideo(video: NewVideo): Promise<VideoRecord>;
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
