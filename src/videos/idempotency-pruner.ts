import type { Clock } from '../clock.js';
import type { Logger } from '../lib/logger.js';
import type { IdempotencyRepository } from '../store/repositories.js';
import type { CancelTimer, Timers } from '../timers.js';

export interface IdempotencyKeyPrunerOptions {
  keys: Pick<IdempotencyRepository, 'prune'>;
  clock: Clock;
  timers: Timers;
  logger: Logger;
  /** How often expired keys are deleted while workers run. */
  everyMs?: number;
}

/** Deletes idempotency keys past their retention on a timer, while the workers run. */
export interface IdempotencyKeyPruner {
  start(): void;
  stop(): void;
}

export function createIdempotencyKeyPruner(options: IdempotencyKeyPrunerOptions): IdempotencyKeyPruner {
  const { keys, clock, logger } = options;
  let stopTimer: CancelTimer | null = null;
  return {
    start() {
      if (stopTimer !== null) return;
      stopTimer = options.timers.setInterval(
        () => {
          keys
            .prune(clock.now())
            .then((deleted) => {
              if (deleted > 0) logger.debug({ deleted }, 'pruned expired idempotency keys');
            })
            .catch((error: unknown) => logger.warn({ err: error }, 'pruning idempotency keys failed; retrying later'));
        },
        options.everyMs ?? 10 * 60_000,
      ); // 10 min
    },
    stop() {
      stopTimer?.();
      stopTimer = null;
    },
  };
}
