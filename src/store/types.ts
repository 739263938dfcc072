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
  applyTransition(id: string, now: number, transition: VideoTransition, nextPollAt: number | null, events: OutboxEvent[]): Promise<VideoRecord | undefined>;
  /** Records a poll that changed nothing visible; releases the lease. */
  reschedulePoll(id: string, now: number, schedule: PollReschedule): Promise<void>;
  /** Replaces the result of a completed video (fresh signed download URL). */
  refreshResult(id: string, now: number, result: VideoResult): Promise<VideoRecord | undefined>;
  /** Cheap liveness check for /readyz. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
