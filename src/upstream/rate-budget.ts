import { setTimeout as timersSleep } from 'node:timers/promises';

import { type Clock, systemClock } from '../clock.js';

/** Waits `ms` milliseconds; injected so tests never really sleep. */
export type Sleep = (ms: number) => Promise<void>;

export const realSleep: Sleep = async (ms) => {
  await timersSleep(ms);
};

/**
 * A budget shared with the other replicas (with `REDIS_URL`), taken after this replica's own bucket, so all
 * replicas together stay within `UPSTREAM_MAX_RPS`.
 */
export interface SharedRateBudget {
  /** Takes one call, waiting for it at most `maxWaitMs`; refused, it took nothing and `waitMs` says how long it would be. */
  take(maxWaitMs: number): Promise<{ granted: boolean; waitMs: number }>;
}

export interface RateBudgetOptions {
  /** Sustained calls per second. `0`, a negative value or `Infinity` means "no limit". */
  ratePerSecond: number;
  /** Calls allowed at once after an idle period. Default: `max(1, ceil(ratePerSecond))`. */
  burst?: number;
  clock?: Clock;
  sleep?: Sleep;
}

/**
 * Token bucket shared by every upstream call (creates and queries alike).
 *
 * It works by reservation: each caller takes a token immediately, even when the bucket is empty
 * (the balance goes negative), and sleeps for as long as the refill needs to cover its debt.
 * So concurrent callers are served in arrival order without a wake-up loop, and the pace is exact.
 */
export class RateBudget {
  private readonly ratePerMs: number;
  private readonly burst: number;
  private readonly clock: Clock;
  private readonly sleep: Sleep;
  private tokens: number;
  private lastRefillMs: number;

  constructor(options: RateBudgetOptions) {
    const rate = options.ratePerSecond;
    this.ratePerMs = Number.isFinite(rate) && rate > 0 ? rate / 1000 : Number.POSITIVE_INFINITY;
    this.burst = Math.max(1, options.burst ?? Math.ceil(Number.isFinite(rate) && rate > 0 ? rate : 1));
    this.clock = options.clock ?? systemClock;
    this.sleep = options.sleep ?? realSleep;
    this.tokens = this.burst;
    this.lastRefillMs = this.clock.now();
  }

  get unlimited(): boolean {
    return this.ratePerMs === Number.POSITIVE_INFINITY;
  }

  /** Takes one token and returns how many milliseconds the caller must wait before using it (0 = go now). */
  reserve(): number {
    return this.tryReserve(Number.POSITIVE_INFINITY).waitMs;
  }

  /**
   * Takes one token only if the caller would wait at most `maxWaitMs` for it. Refused, it takes nothing (the
   * bucket's debt, and so every later caller's wait, stays as it was) and `waitMs` says how long it would have been.
   */
  tryReserve(maxWaitMs: number): { granted: boolean; waitMs: number } {
    if (this.unlimited) return { granted: true, waitMs: 0 };
    this.refill();
    const after = this.tokens - 1;
    const waitMs = after >= 0 ? 0 : Math.ceil(-after / this.ratePerMs);
    if (waitMs > maxWaitMs) return { granted: false, waitMs };
    this.tokens = after;
    return { granted: true, waitMs };
  }

  /** Resolves when the caller may make its call. */
  async acquire(): Promise<void> {
    const waitMs = this.reserve();
    if (waitMs > 0) await this.sleep(waitMs);
  }

  private refill(): void {
    const now = this.clock.now();
    const elapsedMs = Math.max(0, now - this.lastRefillMs);
    this.lastRefillMs = now;
    this.tokens = Math.min(this.burst, this.tokens + elapsedMs * this.ratePerMs);
  }
}
