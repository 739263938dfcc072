/**
 * When to try a webhook again (DESIGN §3). Pure: the caller passes the time, the schedule and the random source.
 */
import type { Random } from '../clock.js';

/** ±20 % spread, so receivers that failed together are not retried in lockstep. */
const RETRY_JITTER = 0.2;
/** A receiver's `Retry-After` is honoured up to this long (a day: the longest default step). */
export const MAX_RETRY_AFTER_MS = 24 * 60 * 60 * 1000;

export interface RetryInput {
  now: number;
  /** Failed attempts in the current series, this one included (1 after the first attempt failed). */
  failedAttempts: number;
  /** Delays after the first attempt (WEBHOOK_RETRY_SCHEDULE), milliseconds. */
  scheduleMs: readonly number[];
  /** The receiver's `Retry-After` in milliseconds from now (only on 429/503), or null. */
  retryAfterMs: number | null;
  random: Random;
}

/**
 * The next attempt time, or null when the schedule is used up (the delivery is then `failed`). The scheduled
 * delay gets ±20 % jitter; a `Retry-After` wins when it asks for later (capped at a day).
 */
export function nextAttemptAt(input: RetryInput): number | null {
  const step = input.scheduleMs[input.failedAttempts - 1];
  if (step === undefined || input.failedAttempts < 1) return null;
  const jittered = Math.round(step * (1 - RETRY_JITTER + 2 * RETRY_JITTER * input.random()));
  const asked = input.retryAfterMs === null ? 0 : Math.min(Math.max(0, input.retryAfterMs), MAX_RETRY_AFTER_MS);
  return input.now + Math.max(jittered, asked);
}
