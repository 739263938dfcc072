import type { ProblemCode } from '../schemas/problem.js';

/*
 * Errors of the domain (videos, webhooks, tracking): what went wrong, in the API's stable vocabulary, without
 * HTTP. The HTTP layer (src/http/problems.ts) is the one place that turns them (and `UpstreamError`s) into
 * statuses, headers and RFC 9457 bodies.
 */

/** One offending field: a JSON pointer into the request (`/body/prompt`) and what is wrong with it. */
export interface FieldError {
  path: string;
  message: string;
}

/** The problem codes a domain rule can end with; the HTTP layer owns the others (auth, parsing, limits). */
export type DomainErrorCode = Extract<
  ProblemCode,
  'validation_failed' | 'not_found' | 'idempotency_key_in_use' | 'idempotency_key_reused' | 'store_unavailable' | 'video_not_terminal'
>;

export class DomainError extends Error {
  override readonly name: string = 'DomainError';
  constructor(
    readonly code: DomainErrorCode,
    /** Safe to show the caller as is. */
    readonly detail: string,
    readonly options: { fieldErrors?: FieldError[]; retryAfterSeconds?: number; cause?: unknown } = {},
  ) {
    super(`${code}: ${detail}`, { cause: options.cause });
  }

  get fieldErrors(): FieldError[] | undefined {
    return this.options.fieldErrors;
  }

  get retryAfterSeconds(): number | undefined {
    return this.options.retryAfterSeconds;
  }
}

/** An unknown id, or one the caller does not own: the two are indistinguishable on purpose. */
export class VideoNotFound extends DomainError {
  override readonly name = 'VideoNotFound';
  constructor(detail = 'No video with this id.') {
    super('not_found', detail);
  }
}

/** A request the rules refuse, naming the fields. */
export class ValidationFailed extends DomainError {
  override readonly name = 'ValidationFailed';
  constructor(detail: string, fieldErrors: FieldError[]) {
    super('validation_failed', detail, { fieldErrors });
  }
}

/** The first request with this Idempotency-Key still runs: its answer is ready soon. */
export class IdempotencyKeyInUse extends DomainError {
  override readonly name = 'IdempotencyKeyInUse';
  constructor(retryAfterSeconds: number) {
    super('idempotency_key_in_use', 'A request with this Idempotency-Key is still running; retry shortly to get its response.', {
      retryAfterSeconds,
    });
  }
}

/** An Idempotency-Key sent again with another request body. */
export class IdempotencyKeyReused extends DomainError {
  override readonly name = 'IdempotencyKeyReused';
  constructor() {
    super(
      'idempotency_key_reused',
      'This Idempotency-Key was already used with a different request body; use a new key for a new request.',
      {
        fieldErrors: [{ path: '/headers/idempotency-key', message: 'was already used with a different request body' }],
      },
    );
  }
}

/** The store cannot be read or written right now; nothing was changed. */
export class StoreUnavailable extends DomainError {
  override readonly name = 'StoreUnavailable';
  constructor(cause?: unknown, retryAfterSeconds = 5) {
    super('store_unavailable', 'The gateway cannot reach its database right now; nothing was changed. Retry shortly.', {
      retryAfterSeconds,
      cause,
    });
  }
}

/** Only a terminal video's event is redelivered. */
export class VideoNotTerminal extends DomainError {
  override readonly name = 'VideoNotTerminal';
  constructor() {
    super('video_not_terminal', 'Only the terminal event is redelivered: wait until the video is completed or failed.');
  }
}

/** A video without a delivery of its terminal event (no callback URL, or the event is not subscribed). */
export class NoWebhookToRedeliver extends DomainError {
  override readonly name = 'NoWebhookToRedeliver';
  constructor() {
    super('not_found', 'This video has no webhook to redeliver: it has no callbackUrl, or its terminal event is not in webhookEvents.');
  }
}
