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
