/**
 * The machine's Redis (127.0.0.1:6379) for tests: one skip line when it is absent (unless `REQUIRE_REDIS=1`, which
 * CI sets), and a key prefix of each test's own, deleted afterwards, so parallel tap jobs never see each other's keys.
 */
import { randomBytes } from 'node:crypto';

import { Redis } from 'ioredis';
import type { Test } from 'tap';

export const redisHost = '127.0.0.1';
export const redisPort = 6379;
export const redisUrl = `redis://${redisHost}:${redisPort}`;
const skipLine = `redis tests skipped: no server at ${redisHost}:${redisPort}`;

let available: Promise<boolean> | undefined;

/** Whether Redis answers a PING (asked once per process). */
export function redisAvailable(): Promise<boolean> {
  available ??= (async () => {
    const probe = new Redis({
      host: redisHost,
      port: redisPort,
      lazyConnect: true,
      connectTimeout: 1000,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    probe.on('error', () => {});
    try {
      await probe.connect();
      return (await probe.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      probe.disconnect();
    }
  })();
  return available;
}

/**
 * Call at the top of a Redis test file: false (after planning zero tests with the one skip line) when Redis is
 * absent, so the file skips; throws instead under `REQUIRE_REDIS=1`.
 */
export async function requireRedis(t: Test): Promise<boolean> {
  if (await redisAvailable()) return true;
  if (process.env['REQUIRE_REDIS'] === '1') throw new Error(`${skipLine}, and REQUIRE_REDIS=1`);
  t.plan(0, skipLine);
  return false;
}

export interface RedisTestSpace {
  /** `test:<random>:` — pass it as the gateway's key prefix. */
  prefix: string;
  /** A client of the test's own (for assertions); closed at teardown. */
  redis: Redis;
  /** The keys under the prefix right now. */
  keys(): Promise<string[]>;
}

/** A fresh key prefix for this test; its keys are deleted when the test ends. */
export async function redisTestSpace(t: Test): Promise<RedisTestSpace> {
  const prefix = `test:${randomBytes(6).toString('hex')}:`;
  const redis = new Redis({ host: redisHost, port: redisPort, maxRetriesPerRequest: 1 });
  const keys = async (): Promise<string[]> => {
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      found.push(...batch);
    } while (cursor !== '0');
    return found;
  };
  t.teardown(async () => {
    const left = await keys();
    if (left.length > 0) await redis.del(...left);
    await redis.quit();
  });
  return { prefix, redis, keys };
}
