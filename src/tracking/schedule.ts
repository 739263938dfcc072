import type { Random } from '../clock.js';

export interface PollScheduleOptions {
  minMs: number;
  maxMs: number;
  /** Growth factor between polls (DESIGN §4.1: ×1.5). */
  factor?: number;
  /** ±share of jitter so many videos created together do not poll in lockstep (±10 %). */
  jitter?: number;
}

const jittered = (delayMs: number, jitter: number, random: Random): number => Math.round(delayMs * (1 - jitter + 2 * jitter * random()));

/**
 * Delay before the next poll of a running video. Grows ×1.5 from `minMs` up to `maxMs`; an upstream
 * `estimate_wait_seconds` pushes the next poll later (never past `maxMs`, so a pessimistic estimate
 * cannot hide a finished video for long).
 */
export function nextPollDelay(
  pollsSoFar: number,
  estimateWaitSeconds: number | null,
  options: PollScheduleOptions,
  random: Random,
): number {
  const { minMs, maxMs, factor = 1.5, jitter = 0.1 } = options;
  const grown = Math.min(maxMs, minMs * factor ** Math.max(0, pollsSoFar));
  const estimated = estimateWaitSeconds !== null && estimateWaitSeconds > 0 ? Math.min(maxMs, estimateWaitSeconds * 1000) : 0;
  return jittered(Math.max(grown, estimated), jitter, random);
}

/** Delay before the first poll after a create: ~minMs, or the upstream's estimate (capped at maxMs). */
export function firstPollDelay(estimateWaitSeconds: number | null, options: PollScheduleOptions, random: Random): number {
  return nextPollDelay(0, estimateWaitSeconds, options, random);
}

/** When a video created at `now` is first polled: what creates ask the tracking side for. */
export type FirstPollAt = (now: number, estimateWaitSeconds: number | null) => number;

export const firstPollAt =
  (options: PollScheduleOptions, random: Random): FirstPollAt =>
  (now, estimateWaitSeconds) =>
    now + firstPollDelay(estimateWaitSeconds, options, random);

/**
 * The poll schedule while upstream callbacks are on (DESIGN §4.1): callbacks make a video due at once, so polling is
 * only the safety net for lost ones. The first poll stays at ~minMs (it confirms the upstream knows the task);
 * every later one waits `maxWithCallbacksMs` (the growth factor reaches it in one step). Pure.
 */
export function callbackSafetyNetSchedule(base: PollScheduleOptions, maxWithCallbacksMs: number): PollScheduleOptions {
  const maxMs = Math.max(base.minMs, maxWithCallbacksMs);
  return { ...base, maxMs, factor: Math.max(base.factor ?? 1.5, maxMs / base.minMs) };
}

/** Extra polls a video's callbacks may cause: at most one per this window, however many arrive. */
export const callbackPollWindowMs = 2_000;

/**
 * When a callback arriving at `now` should make its video due, given when the last callback-made poll was set for
 * (`lastAt`, undefined when none is remembered): now when the window has passed; the end of the window when it has
 * not (the news is not dropped, only deferred); null when a poll later than now is already set — it will see
 * whatever this callback announces. Pure.
 */
export function callbackPollAt(lastAt: number | undefined, now: number, windowMs = callbackPollWindowMs): number | null {
  if (lastAt === undefined || now >= lastAt + windowMs) return now;
  if (lastAt > now) return null;
  return lastAt + windowMs;
}
