import type { Clock } from '../clock.js';

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
