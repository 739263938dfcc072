import type { Random } from '../clock.js';

export interface ReconnectBackoff {
  /** Delay before the first retry. */
  baseMs: number;
  /** Longest delay between retries. */
  maxMs: number;
  /** Each delay is spread by ±this share, so replicas cut at the same instant do not reconnect in lockstep. */
  jitter: number;
}

export const defaultReconnectBackoff: ReconnectBackoff = { baseMs: 100, maxMs: 10_000, jitter: 0.2 };

/**
 * Delay before reconnect attempt `attempt` (1 = the first after a loss): doubling from `baseMs` up to `maxMs`,
 * then ±`jitter`. Pure.
 */
export function reconnectDelayMs(attempt: number, random: Random, backoff: ReconnectBackoff = defaultReconnectBackoff): number {
  const exponent = Math.min(Math.max(0, attempt - 1), 30);
  const nominal = Math.min(backoff.maxMs, backoff.baseMs * 2 ** exponent);
  return Math.round(nominal * (1 - backoff.jitter + 2 * backoff.jitter * random()));
}
