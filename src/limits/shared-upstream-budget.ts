import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';

import type { SharedRateBudget, Sleep } from '../upstream/rate-budget.js';
import type { RedisLink } from './redis-link.js';

/** Calls per window of the shared budget: never more than the cap (a fractional cap rounds down, a slow one widens the window). Pure. */
export function sharedWindow(ratePerSecond: number): { points: number; durationSeconds: number } {
  if (ratePerSecond >= 1) return { points: Math.floor(ratePerSecond), durationSeconds: 1 };
  return { points: 1, durationSeconds: Math.ceil(1 / ratePerSecond) };
}

export interface SharedUpstreamBudgetOptions {
  link: RedisLink;
  /** `UPSTREAM_MAX_RPS`: finite and positive (an unlimited budget needs no sharing). */
  ratePerSecond: number;
  sleep: Sleep;
}

/**
 * `UPSTREAM_MAX_RPS` for all replicas together: a rate-limiter-flexible window in Redis holding at most the cap
 * per second across replicas. While Redis does not answer, its insurance limiter (in memory, same cap) counts for
 * this replica alone; each replica's own token bucket (src/upstream/rate-budget.ts) still paces it in front.
 */
export function createSharedUpstreamBudget(options: SharedUpstreamBudgetOptions): SharedRateBudget {
  const { link, sleep } = options;
  const { points, durationSeconds } = sharedWindow(options.ratePerSecond);
  const limiter = new RateLimiterRedis({
    storeClient: link.redis,
    keyPrefix: `${link.keyPrefix}upstream-budget`,
    points,
    duration: durationSeconds,
    rejectIfRedisNotReady: true,
    insuranceLimiter: new RateLimiterMemory({ points, duration: durationSeconds }),
  });

  return {
    async take(maxWaitMs) {
      let waitedMs = 0;
      for (;;) {
        const shared = link.usable();
        if (!shared) link.countedLocally('upstream');
        try {
          await limiter.consume('all');
          if (shared) link.succeeded();
          return { granted: true, waitMs: waitedMs };
        } catch (rejection) {
          // With an insurance limiter only "over the limit" rejects; anything else must not stop upstream calls.
          if (!(rejection instanceof RateLimiterRes)) {
            link.failed(rejection);
            return { granted: true, waitMs: waitedMs };
          }
          const waitMs = Math.max(1, rejection.msBeforeNext);
          if (waitedMs + waitMs > maxWaitMs) return { granted: false, waitMs: waitedMs + waitMs };
          await sleep(waitMs);
          waitedMs += waitMs;
        }
      }
    },
  };
}
