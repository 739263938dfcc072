import type { Readiness } from '../schemas/health.js';
import type { Clock } from './clock.js';
import type { Logger } from './lib/logger.js';
import type { CircuitState } from './upstream/circuit-breaker.js';
import type { UpstreamHealth } from './upstream/health.js';

export interface ReadinessCheck {
  /** `ready` when the store answers and the upstream accepts our key; the circuit state is reported, not judged. */
  check(): Promise<Readiness>;
}

export interface ReadinessSources {
  pingStore: () => Promise<void>;
  /** A cheap write proving the store takes writes (a heartbeat row); at most every `heartbeatEveryMs` while it works. */
  writeHeartbeat?: (now: number) => Promise<void>;
  heartbeatEveryMs?: number;
  clock?: Clock;
  /** The store turning unusable is logged at error level, once per episode. */
  logger?: Pick<Logger, 'error' | 'info'>;
  health: Pick<UpstreamHealth, 'authFailingSince'>;
  circuitState: () => CircuitState;
}

export function createReadinessCheck(sources: ReadinessSources): ReadinessCheck {
  const { pingStore, health, circuitState, writeHeartbeat, clock, logger } = sources;
  const heartbeatEveryMs = sources.heartbeatEveryMs ?? 5_000;
  /** When the last heartbeat write succeeded; null until one did, or since one failed (then every check writes). */
  let lastBeatAt: number | null = null;
  let storeWasOk = true;

  const checkStore = async (): Promise<void> => {
    await pingStore();
    if (writeHeartbeat === undefined) return;
    const now = clock?.now() ?? Date.now();
    if (lastBeatAt !== null && now - lastBeatAt < heartbeatEveryMs) return;
    lastBeatAt = null;
    await writeHeartbeat(now);
    lastBeatAt = now;
  };

  return {
    async check() {
      const storeOk = await checkStore().then(
        () => true,
        (error: unknown) => {
          if (storeWasOk) logger?.error({ err: error }, 'readiness: the store cannot be read or written; answering 503 until it can');
          return false;
        },
      );
      if (storeOk && !storeWasOk) logger?.info({ store: 'ok' }, 'readiness: the store takes writes again');
      storeWasOk = storeOk;
      const authOk = health.authFailingSince() === null;
      return {
        status: storeOk && authOk ? 'ready' : 'not_ready',
        checks: { store: storeOk ? 'ok' : 'failing', upstreamAuth: authOk ? 'ok' : 'refused', upstreamCircuit: circuitState() },
      };
    },
  };
}
