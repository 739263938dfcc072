import rateLimit, { type FastifyRateLimitStore } from '@fastify/rate-limit';
import RedisStore from '@fastify/rate-limit/store/RedisStore.js';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import type { Clock } from '../clock.js';
import type { RedisLink } from '../limits/redis-link.js';
import { callerOf } from './auth.js';
import { ProblemError } from './problems.js';

/*
 * Rate limits (DESIGN §2.5) with @fastify/rate-limit, per client and per end user of a client:
 * - `rateLimitPerMinute` over every request of a client, and `endUserRateLimitPerMinute` over every request that
 *   names an end user (an end-user token, or an app server's `endUserId` in the query or body);
 * - `createLimitPerMinute` and `endUserCreateLimitPerMinute` over creates: counted only once a create passed every
 *   rule, just before the paid upstream call (`admitCreate`), so a 400 or an idempotent replay costs no create.
 * Request counting runs in an `onRequest` hook right after authentication: unauthenticated requests get their 401
 * first and are never counted against a client, and a limited caller is refused before its body is even read.
 * Keys are `<limit>:<client id>[:<end user id>]`, through the one store every limit shares (a Redis store later
 * serves them all). An end user's count is taken before its client's, so a refused end user spends nothing of
 * its client's budget.
 */

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route starts a generation: it calls `admitCreate` before the upstream call (documentation only). */
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

/** Past this many counters, windows that have ended are swept (end-user ids are not bounded by the registry). */
const sweepAboveEntries = 10_000;

/**
 * The plugin's in-memory store reads `Date.now()`; this one counts the same way on the injected clock, so a
 * test can move past a window instead of waiting a minute. Every plugin the limits are installed in shares
 * one map, so a caller's requests are counted together whichever plugin serves them. End-user keys are as many as
 * the end users active in a minute: ended windows are swept once the map is large, at most once per window.
 */
function sharedClockedStore(clock: Clock, windows: Map<string, WindowCount>): new () => FastifyRateLimitStore {
  let lastSweep = Number.NEGATIVE_INFINITY;
  return class ClockedRateLimitStore implements FastifyRateLimitStore {
    incr(key: string, callback: (error: Error | null, result?: { current: number; ttl: number }) => void, timeWindow: number): void {
      const now = clock.now();
      if (windows.size > sweepAboveEntries && now - lastSweep >= timeWindow) {
        lastSweep = now;
        for (const [counted, window] of windows) if (window.windowStart + timeWindow <= now) windows.delete(counted);
      }
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
 * counts (keys `<prefix>rate:<limit>:<client>`, and
 * `<prefix>rate:end-user-all:<client>:<user>` / `end-user-create:…` per end user); while Redis is not usable or a count fails, the same decision is
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

type CheckFunction = ReturnType<FastifyInstance['createRateLimit']>;
type LimitCheck = Awaited<ReturnType<CheckFunction>>;
type CountedCheck = Extract<LimitCheck, { isAllowed: false }>;

const limitHeaders = (check: CountedCheck): Record<string, string> => ({
  'x-ratelimit-limit': String(check.max),
  'x-ratelimit-remaining': String(check.remaining),
  'x-ratelimit-reset': String(check.ttlInSeconds),
});

const refuse = (check: CountedCheck, which: string): ProblemError =>
  new ProblemError('rate_limited', `Too many ${which}: at most ${check.max} per minute. Retry in ${check.ttlInSeconds} s.`, {
    headers: { ...limitHeaders(check), 'x-ratelimit-remaining': '0', 'retry-after': String(Math.max(1, check.ttlInSeconds)) },
  });

export interface ClientRateLimits {
  /**
   * Enforces the request limits on the routes of the calling plugin; call it right after `requireClient`. Every
   * answer carries `x-ratelimit-limit/remaining/reset` of the tightest limit; past one, 429 `rate_limited` with
   * `retry-after` (seconds until the window ends).
   */
  install(app: FastifyInstance): Promise<void>;
  /**
   * The create limits of one request, for `VideoCreator`'s `admit`: counts the end user's (when the video is for
   * one) then the client's create, and throws the 429 when either is spent.
   */
  admitCreate(request: FastifyRequest, reply: FastifyReply): (endUserId: string | null) => Promise<void>;
}

/** The end user a request names: its token's, else an app server's `endUserId` in the query or the body. */
function namedEndUser(request: FastifyRequest): string | null {
  const caller = callerOf(request);
  if (caller.kind === 'end_user') return caller.endUserId;
  for (const source of [request.query, request.body]) {
    if (typeof source === 'object' && source !== null && 'endUserId' in source && typeof source.endUserId === 'string') {
      return source.endUserId;
    }
  }
  return null;
}

/**
 * One instance per gateway: counts are shared by every plugin it is installed in, and with `shared` (REDIS_URL)
 * by every replica.
 */
export function createClientRateLimits(options: { clock: Clock; shared?: RedisLink | null }): ClientRateLimits {
  const windows = new Map<string, WindowCount>();
  const localStore = sharedClockedStore(options.clock, windows);
  const store = options.shared == null ? localStore : redisBackedStore(options.shared, new localStore());
  /** The end user a pending check counts for (keyGenerator sees only the request). */
  const countedEndUser = new WeakMap<FastifyRequest, string>();
  const endUserKey = (request: FastifyRequest): string => `${callerOf(request).client.id}:${countedEndUser.get(request) ?? ''}`;
  let checks: {
    all: CheckFunction;
    creates: CheckFunction;
    endUserAll: CheckFunction;
    endUserCreates: CheckFunction;
  } | null = null;

  /** Counts one limit; throws its 429 when spent; returns the check for the headers (undefined: allow-listed). */
  const count = async (check: CheckFunction, request: FastifyRequest, which: string): Promise<CountedCheck | undefined> => {
    const result = await check(request);
    if (result.isAllowed) return undefined;
    if (result.isExceeded) throw refuse(result, which);
    return result;
  };
  const tightest = (results: Array<CountedCheck | undefined>): CountedCheck | undefined =>
    results.reduce<CountedCheck | undefined>(
      (best, next) => (next !== undefined && (best === undefined || next.remaining < best.remaining) ? next : best),
      undefined,
    );

  const countEndUser = async (check: CheckFunction, request: FastifyRequest, endUserId: string, which: string) => {
    countedEndUser.set(request, endUserId);
    return count(check, request, which);
  };

  return {
    async install(app) {
      await app.register(rateLimit, { global: false, store });
      checks ??= {
        all: app.createRateLimit({
          keyGenerator: (request) => `all:${callerOf(request).client.id}`,
          max: (request) => callerOf(request).client.rateLimitPerMinute,
          timeWindow: rateLimitWindowMs,
        }),
        creates: app.createRateLimit({
          keyGenerator: (request) => `create:${callerOf(request).client.id}`,
          max: (request) => callerOf(request).client.createLimitPerMinute,
          timeWindow: rateLimitWindowMs,
        }),
        endUserAll: app.createRateLimit({
          keyGenerator: (request) => `end-user-all:${endUserKey(request)}`,
          max: (request) => callerOf(request).client.endUserRateLimitPerMinute,
          timeWindow: rateLimitWindowMs,
        }),
        endUserCreates: app.createRateLimit({
          keyGenerator: (request) => `end-user-create:${endUserKey(request)}`,
          max: (request) => callerOf(request).client.endUserCreateLimitPerMinute,
          timeWindow: rateLimitWindowMs,
        }),
      };
      const { all, endUserAll } = checks;

      app.addHook('onRequest', async (request, reply) => {
        const caller = callerOf(request);
        const endUser =
          caller.kind === 'end_user' ? await countEndUser(endUserAll, request, caller.endUserId, 'requests for this end user') : undefined;
        const overall = await count(all, request, 'requests');
        const headers = tightest([endUser, overall]);
        if (headers !== undefined) reply.headers(limitHeaders(headers));
      });
      // An app server naming an end user (query or body) is known only once the request is parsed and valid.
      app.addHook('preHandler', async (request, reply) => {
        if (callerOf(request).kind === 'end_user') return;
        const endUserId = namedEndUser(request);
        if (endUserId === null) return;
        const endUser = await countEndUser(endUserAll, request, endUserId, 'requests for this end user');
        const current = Number(reply.getHeader('x-ratelimit-remaining') ?? Number.POSITIVE_INFINITY);
        if (endUser !== undefined && endUser.remaining < current) reply.headers(limitHeaders(endUser));
      });
    },

    admitCreate(request, reply) {
      return async (endUserId) => {
        if (checks === null) throw new Error('rate limits are not installed');
        const endUser =
          endUserId === null
            ? undefined
            : await countEndUser(checks.endUserCreates, request, endUserId, 'video creations for this end user');
        const client = await count(checks.creates, request, 'video creations');
        const current = Number(reply.getHeader('x-ratelimit-remaining') ?? Number.POSITIVE_INFINITY);
        const tighter = tightest([endUser, client]);
        if (tighter !== undefined && tighter.remaining < current) reply.headers(limitHeaders(tighter));
      };
    },
  };
}
