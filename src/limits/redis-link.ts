import { Redis } from 'ioredis';
import { Counter, Gauge, type Registry } from 'prom-client';

import type { Logger } from '../lib/logger.js';

/*
 * The one Redis connection of a replica (DESIGN §4.5): rate limits and the upstream budget are counted there so
 * every replica shares them. Redis is an accelerator, never a dependency: when it does not answer, each replica
 * counts on its own (a warning once per outage, `gateway_redis_fallback` = 1) and no request fails for it; once
 * it answers again, counting is shared again. Commands never queue while disconnected and time out quickly, so a
 * request never waits on a dead Redis.
 */

export type SharedLimit = 'client' | 'upstream';

export interface RedisLink {
  readonly redis: Redis;
  /** Prefix of every key this gateway writes (replicas sharing limits share it). */
  readonly keyPrefix: string;
  /** Whether shared counting can be attempted now (connected and ready). */
  usable(): boolean;
  /** A shared count failed: limits are local until Redis is ready again. */
  failed(error: unknown): void;
  /** A shared count succeeded (ends a fallback a command timeout started). */
  succeeded(): void;
  /** One limit decision taken locally because Redis was not usable. */
  countedLocally(limit: SharedLimit): void;
  close(): Promise<void>;
}

export interface RedisLinkOptions {
  url: string;
  keyPrefix: string;
  logger: Logger;
  registry?: Registry;
  /** Longest wait of one command; past it the decision is taken locally. Default 250 ms. */
  commandTimeoutMs?: number;
  /** Longest wait for the first connection at start; Redis absent then means local limits. Default 2 s. */
  startTimeoutMs?: number;
}

/** Connects (waiting at most `startTimeoutMs`); never rejects: an unreachable Redis means local limits. */
export async function openRedisLink(options: RedisLinkOptions): Promise<RedisLink> {
  const { logger } = options;
  const registers = options.registry === undefined ? [] : [options.registry];
  const fallbackGauge = new Gauge({
    name: 'gateway_redis_fallback',
    help: 'Whether rate limits and the upstream budget are counted locally (1) because Redis does not answer, or shared (0).',
    registers,
  });
  const localDecisions = new Counter({
    name: 'gateway_redis_fallback_decisions_total',
    help: 'Limit decisions taken on local counts because Redis did not answer, by limit (client, upstream).',
    labelNames: ['limit'] as const,
    registers,
  });

  const redis = new Redis(options.url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: options.commandTimeoutMs ?? 250,
    connectTimeout: 2_000,
    // Reconnect forever, backing off to 2 s: Redis coming back must make limits shared again by itself.
    retryStrategy: (times) => Math.min(100 * times, 2_000),
  });
  let closing = false;
  /** An outage was announced (warned once) and has not ended yet. */
  let warned = false;
  const goLocal = (error: unknown): void => {
    if (closing) return;
    fallbackGauge.set(1);
    if (warned) return;
    warned = true;
    const reason = error instanceof Error ? error.message : 'connection closed';
    logger.warn({ reason }, 'Redis does not answer: rate limits and the upstream budget are counted per replica until it is back');
  };
  const goShared = (): void => {
    fallbackGauge.set(0);
    if (!warned) return;
    warned = false;
    logger.info({}, 'Redis answers again: rate limits and the upstream budget are shared again');
  };
  redis.on('ready', goShared);
  redis.on('error', goLocal);
  redis.on('close', () => goLocal(undefined));
  // Local until the first connection is ready.
  fallbackGauge.set(1);

  const startTimeoutMs = options.startTimeoutMs ?? 2_000;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    redis.connect().catch((error: unknown) => goLocal(error)),
    new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        goLocal(new Error(`no answer within ${startTimeoutMs} ms`));
        resolve();
      }, startTimeoutMs);
    }),
  ]);
  clearTimeout(timer);

  return {
    redis,
    keyPrefix: options.keyPrefix,
    usable: () => redis.status === 'ready',
    failed: goLocal,
    succeeded: goShared,
    countedLocally(limit) {
      localDecisions.inc({ limit });
    },
    async close() {
      closing = true;
      if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect());
      else redis.disconnect();
    },
  };
}
