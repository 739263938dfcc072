import rateLimit, { type FastifyRateLimitStore } from '@fastify/rate-limit';
import RedisStore from '@fastify/rate-limit/store/RedisStore.js';
import type { FastifyInstance, FastifyRequest } from 'fastify';

import type { Clock } from '../clock.js';
import type { RedisLink } from '../limits/redis-link.js';
import { clientOf } from './auth.js';
import { ProblemError } from './problems.js';

/*
 * Per-client rate limits (DESIGN §2.5) with @fastify/rate-limit: `rateLimitPerMinute` over every request of a
 * client, and `createLimitPerMinute` over the routes that start paid work (POST /videos). Counting runs in an
 * `onRequest` hook registered right after authentication: unauthenticated requests get their 401 first and are
 * never counted against a client, and a limited client is refused before its body is even read.
 */

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route starts a generation: it also counts against the client's `createLimitPerMinute`. */
    countsAsCreate?: boolean;
  }
}

const rateLimitWindowMs = 60_000;

interface WindowCount {
  count: number;
  windowStart: number;
}

/** Fixed one-minute windows, counted. Pure. */
export function countInWindow(previous: WindowCount | undefined, now: number, windowMs: number): WindowCount {
  if (previous === undefined || previous.windowStart + windowMs <= now) return { count: 1, windowStart: now };
  return { count: previous.count + 1, windowStart: previous.windowStart };
}

/**
 * The plugin's in-memory store reads `Date.now()`; this one counts the same way on the injected clock, so a
 * test can move past a window instead of waiting a minute. Every plugin the limits are installed in shares
 * one map, so a client's requests are counted together whichever plugin serves them. Keys are
 * `<limit>:<authenticated client id>`, a set bounded by the client registry, so the map cannot grow without bound.
 */
function sharedClockedStore(clock: Clock, windows: Map<string, WindowCount>): new () => FastifyRateLimitStore {
  return class ClockedRateLimitStore implements FastifyRateLimitStore {
    incr(key: string, callback: (error: Error | null, result?: { current: number; ttl: number }) => void, timeWindow: number): void {
      const now = clock.now();
      const next = countInWindow(windows.get(key), now, timeWindow);
      windows.set(key, next);
      callback(null, { current: next.count, ttl: next.windowStart + timeWindow - now });
    }

    child(): FastifyRateLimitStore {
      return new ClockedRateLimitStore();
    }
  };
}

type IncrCallback = Parameters<FastifyRateLimitStore['incr']>[1];

/**
 * With `REDIS_URL`: counts in Redis with @fastify/rate-limit's own Redis store, so every replica holds the same
 * counts (keys `<prefix>rate:<limit>:<client>`); while Redis is not usable or a count fails, the same decision is
 * taken on this replica's local counts instead — a warning and a metric, never an error to the client.
 */
function redisBackedStore(link: RedisLink, local: FastifyRateLimitStore): new () => FastifyRateLimitStore {
  const shared = new RedisStore(false, false, link.redis, `${link.keyPrefix}rate:`);
  const countLocally = (key: string, callback: IncrCallback, timeWindow: number, max: number): void => {
    link.countedLocally('client');
    local.incr(key, callback, timeWindow, max);
  };
  return class RedisBackedRateLimitStore implements FastifyRateLimitStore {
    incr(key: string, callback: IncrCallback, timeWindow: number, max: number): void {
      if (!link.usable()) {
        countLocally(key, callback, timeWindow, max);
        return;
      }
      shared.incr(
        key,
        (error, result) => {
          if (error === null && result != null) {
            link.succeeded();
            callback(null, result);
            return;
          }
          link.failed(error);
          countLocally(key, callback, timeWindow, max);
        },
        timeWindow,
        max,
      );
    }

    child(): FastifyRateLimitStore {
      return new RedisBackedRateLimitStore();
    }
  };
}

/** One counted request against one limit: what the headers and a refusal are made of. */
interface Counted {
  max: number;
  remaining: number;
  ttlInSeconds: number;
  isExceeded: boolean;
}

const limitHeaders = (check: Counted): Record<string, string> => ({
  'x-ratelimit-limit': String(check.max),
  'x-ratelimit-remaining': String(check.remaining),
  'x-ratelimit-reset': String(check.ttlInSeconds),
});

const refuse = (check: Counted, which: string): ProblemError =>
  new ProblemError('rate_limited', `Too many ${which}: at most ${check.max} per minute. Retry in ${check.ttlInSeconds} s.`, {
    headers: { ...limitHeaders(check), 'x-ratelimit-remaining': '0', 'retry-after': String(Math.max(1, check.ttlInSeconds)) },
  });

export interface ClientRateLimits {
  /**
   * Enforces the limits on the routes of the calling plugin; call it right after `requireClient`. Every answer
   * carries `x-ratelimit-limit/remaining/reset` of the tighter limit; past either, 429 `rate_limited` with
   * `retry-after` (seconds until the window ends).
   */
  install(app: FastifyInstance): Promise<void>;
}

/**
 * One instance per gateway: counts are shared by every plugin it is installed in, and with `shared` (REDIS_URL)
 * by every replica.
 */
export function createClientRateLimits(options: { clock: Clock; shared?: RedisLink | null }): ClientRateLimits {
  const windows = new Map<string, WindowCount>();
  const localStore = sharedClockedStore(options.clock, windows);
  const store = options.shared == null ? localStore : redisBackedStore(options.shared, new localStore());
  /**
   * Without Redis the counts live in this process: counted here directly, the same arithmetic as
   * @fastify/rate-limit's (remaining = max − current, reset = ⌈ttl / 1 s⌉, exceeded past max), without its
   * per-request key generator, option lookups and promise around a synchronous store (the hot path's share).
   */
  const countLocally = (key: string, max: number): Counted => {
    const now = options.clock.now();
    const next = countInWindow(windows.get(key), now, rateLimitWindowMs);
    windows.set(key, next);
    return {
      max,
      remaining: Math.max(0, max - next.count),
      ttlInSeconds: Math.ceil((next.windowStart + rateLimitWindowMs - now) / 1000),
      isExceeded: next.count > max,
    };
  };

  return {
    async install(app) {
      let countAll: (request: FastifyRequest) => Counted | Promise<Counted>;
      let countCreate: (request: FastifyRequest) => Counted | Promise<Counted>;
      if (options.shared == null) {
        countAll = (request) => {
          const client = clientOf(request);
          return countLocally(`all:${client.id}`, client.rateLimitPerMinute);
        };
        countCreate = (request) => {
          const client = clientOf(request);
          return countLocally(`create:${client.id}`, client.createLimitPerMinute);
        };
      } else {
        await app.register(rateLimit, { global: false, store });
        const allRequests = app.createRateLimit({
          keyGenerator: (request) => `all:${clientOf(request).id}`,
          max: (request) => clientOf(request).rateLimitPerMinute,
          timeWindow: rateLimitWindowMs,
        });
        const creates = app.createRateLimit({
          keyGenerator: (request) => `create:${clientOf(request).id}`,
          max: (request) => clientOf(request).createLimitPerMinute,
          timeWindow: rateLimitWindowMs,
        });
        // The plugin answers `isAllowed` only for allow-listed keys, which these limits never configure.
        const counted = async (check: ReturnType<typeof allRequests>): Promise<Counted> => {
          const result = await check;
          if (result.isAllowed) throw new Error('rate limit: unexpected allow-listed key');
          return result;
        };
        countAll = (request) => counted(allRequests(request));
        countCreate = (request) => counted(creates(request));
      }

      app.addHook('onRequest', async (request, reply) => {
        const overall = await countAll(request);
        if (overall.isExceeded) throw refuse(overall, 'requests');
        let tightest = overall;
        if (request.routeOptions.config.countsAsCreate === true) {
          const create = await countCreate(request);
          if (create.isExceeded) throw refuse(create, 'video creations');
          if (create.remaining < tightest.remaining) tightest = create;
        }
        reply.headers(limitHeaders(tightest));
      });
    },
  };
}
