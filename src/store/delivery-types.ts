import type { WebhookEventType } from '../../schemas/video.js';
import type { VideoRecord } from './types.js';

/** How much one claim of due deliveries may take. */
export interface ClaimDeliveriesOptions {
  limit: number;
  /** A claimed delivery is reclaimable after this long, so a crash mid-attempt never strands it. */
  leaseMs: number;
  /** Receivers (`host[:port]`) already at their concurrency cap: none of their deliveries is claimed. */
  excludeHosts?: readonly string[];
  /** At most this many deliveries per receiver in one claim, so one busy receiver cannot fill the batch. */
  perHostLimit?: number;
}

/** An outbox row the dispatcher holds a lease on. Times are epoch milliseconds. */
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
  /** Start of the attempt (epoch ms). */
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

/** The outbox side of the store (DESIGN §3, §4): the dispatcher's claims and records, the delivery log, redelivery. */
export interface DeliveryStore {
  /**
   * Claims deliveries that are due (`pending` or `retrying`, `next_attempt_at <= now`, lease free or expired),
   * most overdue first, and leases them until `now + leaseMs`. Two dispatchers never claim the same row.
   */
  claimDueDeliveries(now: number, options: ClaimDeliveriesOptions): Promise<ClaimedDelivery[]>;
  /** Stores the body of a delivery's first attempt unless one is stored already; returns the stored body. */
  snapshotDeliveryPayload(messageId: string, payload: string): Promise<string>;
  /**
   * Logs the attempt and, while the row still carries the claim's lease, applies its outcome and refreshes the
   * video's webhook summary, all in one transaction. Returns the updated video, or undefined when the lease was
   * lost (a redelivery or another dispatcher took the row over: only the log entry is written).
   */
  recordDeliveryAttempt(result: DeliveryAttemptResult): Promise<VideoRecord | undefined>;
  /** Gives a claimed delivery back without an attempt (shutdown): due again at once. */
  releaseDelivery(messageId: string, leaseUntil: number): Promise<void>;
  /** A video's attempts, newest first. */
  listDeliveryAttempts(videoId: string, limit: number): Promise<DeliveryAttemptEntry[]>;
  /**
   * Enqueues the terminal event of a terminal video again (same message id, same body, a fresh retry series),
   * due at `now`.
   */
  redeliver(videoId: string, now: number): Promise<RedeliverResult>;
}
