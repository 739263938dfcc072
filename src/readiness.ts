import type { Readiness } from '../schemas/health.js';
import type { CircuitState } from './upstream/circuit-breaker.js';
import type { UpstreamHealth } from './upstream/health.js';

export interface ReadinessCheck {
  /** `ready` when the store answers and the upstream accepts our key; the circuit state is reported, not judged. */
  check(): Promise<Readiness>;
}

export interface ReadinessSources {
  pingStore: () => Promise<void>;
  health: Pick<UpstreamHealth, 'authFailingSince'>;
  circuitState: () => CircuitState;
}

export function createReadinessCheck({ pingStore, health, circuitState }: ReadinessSources): ReadinessCheck {
  return {
    async check() {
      const storeOk = await pingStore().then(
        () => true,
        () => false,
      );
      const authOk = health.authFailingSince() === null;
      return {
        status: storeOk && authOk ? 'ready' : 'not_ready',
        checks: { store: storeOk ? 'ok' : 'failing', upstreamAuth: authOk ? 'ok' : 'refused', upstreamCircuit: circuitState() },
      };
    },
  };
}
