import type { Clock } from '../clock.js';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../lib/logger.js';
import type { VideoRepository } from '../store/repositories.js';
import type { CancelTimer, Timers } from '../timers.js';

export interface VideoRetentionOptions {
  videos: Pick<VideoRepository, 'eraseTerminalBefore'>;
  bus: EventBus;
  clock: Clock;
  timers: Timers;
  logger: Logger;
  /** `VIDEO_RETENTION`: terminal videos completed longer ago than this are erased. */
  retentionMs: number;
  /** Videos erased per transaction, so a large backlog never holds the database in one long write. */
  batchSize?: number;
  /** Batches per sweep at most; the rest waits for the next sweep. */
  maxBatchesPerSweep?: number;
  /** How often a sweep runs while workers run. */
  everyMs?: number;
}

/** Erases terminal videos past `VIDEO_RETENTION` (DESIGN §2.4) on a timer, in bounded batches. */
export interface VideoRetention {
  /** One sweep now: batches until one comes back short (or the per-sweep cap); resolves with how many were erased. */
  sweep(): Promise<number>;
  start(): void;
  stop(): Promise<void>;
}

export function createVideoRetention(options: VideoRetentionOptions): VideoRetention {
  const { videos, bus, clock, logger, retentionMs } = options;
  const batchSize = options.batchSize ?? 100;
  const maxBatches = options.maxBatchesPerSweep ?? 50;
  let stopTimer: CancelTimer | null = null;
  /** The sweep under way, so two never overlap and `stop` can wait for it. */
  let running: Promise<number> | null = null;

  const sweepOnce = async (): Promise<number> => {
    let erased = 0;
    for (let batch = 0; batch < maxBatches; batch += 1) {
      const now = clock.now();
      const tombstones = await videos.eraseTerminalBefore(now - retentionMs, batchSize, now);
      for (const tombstone of tombstones) bus.publish({ deleted: tombstone });
      erased += tombstones.length;
      if (tombstones.length < batchSize) break;
    }
    if (erased > 0) logger.info({ erased, retentionMs }, 'erased videos past VIDEO_RETENTION');
    return erased;
  };

  const sweep = (): Promise<number> => {
    running ??= sweepOnce().finally(() => {
      running = null;
    });
    return running;
  };

  return {
    sweep,
    start() {
      if (stopTimer !== null) return;
      stopTimer = options.timers.setInterval(
        () => {
          sweep().catch((error: unknown) => logger.warn({ err: error }, 'erasing videos past VIDEO_RETENTION failed; retrying later'));
        },
        options.everyMs ?? 60_000, // 1 min
      );
    },
    async stop() {
      stopTimer?.();
      stopTimer = null;
      await running?.catch(() => {});
    },
  };
}
