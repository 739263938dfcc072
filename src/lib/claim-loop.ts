import { type CancelTimer, systemTimers, type Timers } from '../timers.js';

/**
 * The background rhythm shared by the poller and the webhook dispatcher: every `tickMs`, or at once when
 * woken, claim due work and launch it. Launched jobs run on their own; the loop never waits for them, so
 * one slow job cannot hold back the next claim.
 */
export interface ClaimLoop {
  start: () => void;
  /**
   * Stops scheduling claims; resolves once a claim under way has launched its jobs, so the owner's set of
   * jobs in flight is complete when it awaits them (none starts against a store that is closing).
   */
  stop: () => Promise<void>;
  /** Claims now instead of at the next tick (no-op while stopped; mid-claim, claims again once it is done). */
  wake: () => void;
}

export interface ClaimLoopOptions {
  /** Claims due work and launches it; resolves once launched. */
  launch: () => Promise<unknown>;
  tickMs: number;
  /** Called with a failed claim's error; the next claim then backs off (tick × 2^failures, at most `maxBackoffMs`). */
  onError: (error: unknown) => void;
  /** Longest wait between claims while they keep failing (an unreachable store). Default 5 s. */
  maxBackoffMs?: number;
  /** Default the system's. */
  timers?: Timers;
}

export function createClaimLoop(options: ClaimLoopOptions): ClaimLoop {
  const timers = options.timers ?? systemTimers;
  const maxBackoffMs = Math.max(options.tickMs, options.maxBackoffMs ?? 5_000);
  let cancel: CancelTimer | null = null;
  let running = false;
  let claiming: Promise<unknown> = Promise.resolve();
  /** Woken while a claim was under way: what woke it may not be in that claim's answer. */
  let wokenMidClaim = false;
  /** Claims failed in a row: the next one waits tick × 2^failures, at most maxBackoffMs. */
  let failures = 0;

  const schedule = (delayMs: number): void => {
    cancel = timers.setTimeout(() => void loop(), delayMs);
  };

  const loop = async (): Promise<void> => {
    cancel = null;
    if (!running) return;
    wokenMidClaim = false;
    let failed = false;
    claiming = options.launch().catch((error: unknown) => {
      failed = true;
      options.onError(error);
    });
    await claiming;
    failures = failed ? failures + 1 : 0;
    const delayMs = failures === 0 ? (wokenMidClaim ? 0 : options.tickMs) : Math.min(maxBackoffMs, options.tickMs * 2 ** failures);
    if (running && cancel === null) schedule(delayMs);
  };

  return {
    start() {
      if (running) return;
      running = true;
      void loop();
    },
    async stop() {
      running = false;
      cancel?.();
      cancel = null;
      await claiming;
    },
    wake() {
      // While backing off (the store is failing), a wake must not turn into a claim per event.
      if (!running || failures > 0) return;
      if (cancel === null) {
        wokenMidClaim = true;
        return;
      }
      cancel();
      schedule(0);
    },
  };
}

/** A background worker built on a claim loop: the poller and the webhook dispatcher. */
export interface ClaimingWorker {
  /** Claims due work and runs it; resolves when that work is done. Tests drive this directly. */
  tick(): Promise<number>;
  /** Starts the background loop. */
  start(): void;
  /** Stops claiming and waits for work in flight, at most `graceMs` when given. */
  stop(graceMs?: number): Promise<void>;
  /** Looks for due work now instead of at the next tick. */
  wake(): void;
  inFlight(): number;
}
