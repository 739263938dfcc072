import type { Clock } from '../clock.js';
import { type UpstreamClient, UpstreamError } from './types.js';

/**
 * What the gateway knows about its own standing with the upstream: a refused key (401/403) is our
 * misconfiguration, reported by /readyz; the circuit state is reported alongside.
 */
export interface UpstreamHealth {
  markAuthFailure(): void;
  markSuccess(): void;
  authFailingSince(): number | null;
}

export function createUpstreamHealth(clock: Clock): UpstreamHealth {
  let authFailingSince: number | null = null;
  return {
    markAuthFailure() {
      authFailingSince ??= clock.now();
    },
    markSuccess() {
      authFailingSince = null;
    },
    authFailingSince: () => authFailingSince,
  };
}

/** Every answer proves the key works and every 401/403 says it does not: callers never mark `health` themselves. */
export function withHealthTracking(client: UpstreamClient, health: UpstreamHealth): UpstreamClient {
  const tracked = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      const answer = await call();
      health.markSuccess();
      return answer;
    } catch (error) {
      if (error instanceof UpstreamError && error.kind === 'auth') health.markAuthFailure();
      throw error;
    }
  };
  return {
    createGeneration: (request) => tracked(() => client.createGeneration(request)),
    getGeneration: (upstreamId) => tracked(() => client.getGeneration(upstreamId)),
    close: () => client.close(),
  };
}
