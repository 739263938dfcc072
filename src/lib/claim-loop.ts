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
  onError: (error: unknown) => void;
}

export function createClaimLoop(options: ClaimLoopOptions): ClaimLoop {
  let timer: NodeJS.Timeout | null = null;
  let running = false;
  let claiming: Promise<unknown> = Promise.resolve();
  /** Woken while a claim was under way: what woke it may not be in that claim's answer. */
  let wokenMidClaim = false;

  const schedule = (delayMs: number): void => {
    timer = setTimeout(() => void loop(), delayMs);
  };

  const loop = async (): Promise<void> => {
    timer = null;
    if (!running) return;
    wokenMidClaim = false;
    claiming = options.launch().catch(options.onError);
    await claiming;
    if (running && timer === null) schedule(wokenMidClaim ? 0 : options.tickMs);
  };

  return {
    start() {
      if (running) return;
      running = true;
      void loop();
    },
    async stop() {
      running = false;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      await claiming;
    },
    wake() {
      if (!running) return;
      if (timer === null) {
        wokenMidClaim = true;
        return;
      }
      clearTimeout(timer);
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
