/**
 * What one webhook attempt means for its delivery (DESIGN §3). Pure.
 *
 * 2xx is success. 410 Gone stops retries for that event. Every other answer — 3xx (redirects are never followed),
 * 4xx, 5xx — and every network failure or timeout is retried on the schedule; `Retry-After` counts on 429 and 503.
 */
import { parseRetryAfter } from '../lib/retry-after.js';

export type AttemptOutcome =
  | { kind: 'delivered' }
  /** No more attempts for this event (410 Gone, or nothing left to send it with). */
  | { kind: 'stop'; error: string }
  | { kind: 'retry'; retryAfterMs: number | null; error: string | null };

/** Classifies an HTTP answer. `retryAfter` is the raw header; `now` reads an HTTP-date. */
export function classifyResponse(
  status: number,
  headers: { retryAfter?: string | string[]; location?: string | string[] },
  now: number,
): AttemptOutcome {
  if (status >= 200 && status < 300) return { kind: 'delivered' };
  if (status === 410) return { kind: 'stop', error: 'the receiver answered 410 Gone: no more attempts for this event' };
  if (status >= 300 && status < 400) {
    const location = Array.isArray(headers.location) ? headers.location[0] : headers.location;
    const where = location === undefined ? '' : ` (to ${truncate(location, 200)})`;
    return { kind: 'retry', retryAfterMs: null, error: `redirects are not followed${where}` };
  }
  const retryAfterMs = status === 429 || status === 503 ? parseRetryAfter(headers.retryAfter, now) : null;
  return { kind: 'retry', retryAfterMs, error: null };
}

/** An event that can never be sent (e.g. its client was removed): failed without retries. */
export const permanentFailure = (error: string): AttemptOutcome => ({ kind: 'stop', error });

/** A failure without an answer (network error, timeout, refused address). */
export const networkFailure = (error: string): AttemptOutcome => ({ kind: 'retry', retryAfterMs: null, error });

export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
