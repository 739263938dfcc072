/**
 * A circuit breaker in front of the ElkAPI client (cockatiel), shared by creates and polls: after
 * `consecutiveFailures` outages in a row (5xx, network failure, timeout) every call fails at once with
 * `circuit_open` for `halfOpenAfterMs`; then one probe call goes through — success closes the circuit,
 * another outage opens it again. Refusals (`rejected`, `not_found`, `auth`, `rate_limited`) prove the upstream
 * is up and never count: 429s have their own pause (the poller) and a refused key its own alarm (/readyz).
 */
import {
  BrokenCircuitError,
  circuitBreaker,
  CircuitState as CockatielState,
  ConsecutiveBreaker,
  handleWhen,
  type IBackoff,
  type IBackoffFactory,
  type IHalfOpenAfterBackoffContext,
  IsolatedCircuitError,
} from 'cockatiel';

import { type Clock, systemClock } from '../clock.js';
import type { UpstreamOperation } from './client.js';
import { type UpstreamClient, type UpstreamCreateRequest, UpstreamError, type UpstreamGeneration } from './types.js';

export type CircuitState = 'closed' | 'open' | 'half_open';

export interface CircuitBreakerOptions {
  /** Consecutive outages that open the circuit. Default 5. */
  consecutiveFailures?: number;
  /** How long the circuit stays open before one probe call may pass. Default 30 000. */
  halfOpenAfterMs?: number;
  clock?: Clock;
  /** Called on every state change (logs, metrics). */
  onStateChange?: (state: CircuitState) => void;
  /** Called for each call refused without reaching the upstream. */
  onShortCircuit?: (op: UpstreamOperation) => void;
}

export interface CircuitBreakingClient extends UpstreamClient {
  /** `half_open` once the open period has passed: the next call is let through as the probe. */
  circuitState: () => CircuitState;
}

const circuitOpenMessage = 'The video service is temporarily unavailable; try again later.';

/** Outages only: the upstream did not answer usefully. Anything it answered on purpose proves it is up. */
const countsAsOutage = (error: unknown): boolean =>
  error instanceof UpstreamError && (error.kind === 'unavailable' || error.kind === 'timeout');

/**
 * cockatiel measures the open period with `Date.now()`; this backoff answers from the injected clock instead,
 * so a ManualClock drives the breaker. cockatiel stays open while `Date.now() - openedAt < duration`: an infinite
 * duration keeps it open, a negative infinite one lets the probe through — whatever the real time says.
 */
function clockBackoff(clock: Clock, openMs: number, onOpen: (reopensAt: number) => void): IBackoffFactory<IHalfOpenAfterBackoffContext> {
  const start = (): IBackoff<IHalfOpenAfterBackoffContext> => {
    const reopensAt = clock.now() + openMs;
    onOpen(reopensAt);
    return {
      get duration() {
        return clock.now() < reopensAt ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
      },
      next: start,
    };
  };
  return { next: start };
}

export function withCircuitBreaker(client: UpstreamClient, options: CircuitBreakerOptions = {}): CircuitBreakingClient {
  const clock = options.clock ?? systemClock;
  const halfOpenAfterMs = options.halfOpenAfterMs ?? 30_000;
  let reopensAt = 0;
  const breaker = circuitBreaker(handleWhen(countsAsOutage), {
    breaker: new ConsecutiveBreaker(options.consecutiveFailures ?? 5),
    halfOpenAfter: clockBackoff(clock, halfOpenAfterMs, (at) => {
      reopensAt = at;
    }),
  });

  const circuitState = (): CircuitState => {
    switch (breaker.state) {
      case CockatielState.Closed:
        return 'closed';
      case CockatielState.HalfOpen:
        return 'half_open';
      case CockatielState.Open:
        return clock.now() < reopensAt ? 'open' : 'half_open';
      case CockatielState.Isolated:
        return 'open';
    }
  };

  if (options.onStateChange !== undefined) {
    const notify = options.onStateChange;
    breaker.onStateChange(() => notify(circuitState()));
  }

  const guarded = async <T>(op: UpstreamOperation, call: () => Promise<T>): Promise<T> => {
    let answer: { value: T } | { refusal: unknown };
    try {
      // A refusal is an answer: for the breaker it counts as a success (it resets the run of outages, closes a
      // half-open circuit) and is rethrown to the caller below. Only outages reach cockatiel as failures.
      answer = await breaker.execute(async () => {
        try {
          return { value: await call() };
        } catch (error) {
          if (countsAsOutage(error)) throw error;
          return { refusal: error };
        }
      });
    } catch (error) {
      if (error instanceof BrokenCircuitError || error instanceof IsolatedCircuitError) {
        options.onShortCircuit?.(op);
        throw new UpstreamError('circuit_open', circuitOpenMessage, null, Math.max(1000, reopensAt - clock.now()));
      }
      throw error;
    }
    if ('refusal' in answer) throw answer.refusal;
    return answer.value;
  };

  return {
    createGeneration: (request: UpstreamCreateRequest): Promise<UpstreamGeneration> =>
      guarded('create', () => client.createGeneration(request)),
    getGeneration: (upstreamId: string): Promise<UpstreamGeneration> => guarded('query', () => client.getGeneration(upstreamId)),
    close: () => client.close(),
    circuitState,
  };
}
