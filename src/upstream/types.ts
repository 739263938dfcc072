import type { VideoStatus } from '../../schemas/video.js';

/** Create request in the upstream's snake_case shape. */
export interface UpstreamCreateRequest {
  prompt: string;
  aspect_ratio: string;
  loop: boolean;
  model?: string;
  resolution?: string;
  duration?: string;
  keyframes?: {
    frame0?: UpstreamFrame;
    frame1?: UpstreamFrame;
  };
  /** Where the upstream posts state changes: the gateway's own callback route, a hint to poll (never the client's URL). */
  callback_url?: string;
}

export type UpstreamFrame = { type: 'image'; url: string } | { type: 'generation'; id: string };

export interface UpstreamAsset {
  url: string;
  width: number | null;
  height: number | null;
}

export interface UpstreamVideoAsset extends UpstreamAsset {
  durationSeconds: number | null;
}

/**
 * One upstream generation, normalised from either shape (official create answer, web-app query answer).
 * Only what the gateway uses; everything else is dropped.
 */
export interface UpstreamGeneration {
  upstreamId: string;
  /** Raw upstream state string, e.g. `dreaming`. */
  state: string;
  /** Our status, per DESIGN §2.2 mapping. */
  status: VideoStatus;
  estimateWaitSeconds: number | null;
  failureReason: string | null;
  video: (UpstreamVideoAsset & { downloadUrl: string | null }) | null;
  rawVideo: UpstreamVideoAsset | null;
  thumbnail: UpstreamAsset | null;
  lastFrame: UpstreamAsset | null;
  /**
   * The upstream's `created_at` as ISO 8601, or null when missing or not credible (relays send the zero time
   * `0001-01-01T00:00:00Z`). Informational only: the gateway keeps its own timestamps.
   */
  createdAt?: string | null;
}

/** Response headers as undici / node:http give them (lower-case names). */
export type UpstreamHeaders = Readonly<Record<string, string | string[] | undefined>>;

/** How an upstream failure maps onto our problem codes (DESIGN §2.6). */
export type UpstreamErrorKind =
  /** The upstream refused the request itself (400 other than task_not_exist, 422, moderation). */
  | 'rejected'
  /** The task id is unknown upstream (400 task_not_exist). */
  | 'not_found'
  /** Our own key was refused (401/403): the gateway's misconfiguration, never the client's. */
  | 'auth'
  /** 429 from the upstream. */
  | 'rate_limited'
  /** 5xx, network failure, malformed answer, HTML page. */
  | 'unavailable'
  /** No answer within the configured timeouts. */
  | 'timeout'
  /** Refused by the gateway's own circuit breaker without calling the upstream; `retryAfterMs` says when it probes again. */
  | 'circuit_open';

export class UpstreamError extends Error {
  override readonly name = 'UpstreamError';
  constructor(
    readonly kind: UpstreamErrorKind,
    /** Safe to show a client: sanitised, never an HTML page, never a key. */
    readonly safeMessage: string,
    readonly httpStatus: number | null = null,
    /** From `Retry-After`, when the upstream sent one. */
    readonly retryAfterMs: number | null = null,
    options?: { cause?: unknown },
  ) {
    super(`${kind}: ${safeMessage}`, options);
  }
}

export interface UpstreamClient {
  /** Never retried: a lost answer may still have started a paid generation. */
  createGeneration(request: UpstreamCreateRequest): Promise<UpstreamGeneration>;
  /** Retried on network errors, 5xx and 429 with backoff and jitter, honouring Retry-After. */
  getGeneration(upstreamId: string): Promise<UpstreamGeneration>;
  close(): Promise<void>;
}
