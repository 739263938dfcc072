import type { Caller } from '../auth/caller.js';
import type { Clock } from '../clock.js';
import { VideoNotFound } from '../errors.js';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../lib/logger.js';
import type { VideoTombstone } from '../store/records.js';
import type { VideoRepository } from '../store/repositories.js';

export interface VideoEraserOptions {
  videos: Pick<VideoRepository, 'erase'>;
  bus: EventBus;
  clock: Clock;
  logger: Logger;
}

/** `DELETE /videos/{id}` (DESIGN §2.4). */
export interface VideoEraser {
  /**
   * Erases one of the caller's videos: its content leaves the store, its tracking and pending webhooks stop, cached
   * bodies are dropped and waiters are told (long-polls answer 404, streams end with `deleted`). Unknown, another
   * client's (or, for an end user, another end user's) or already erased: `VideoNotFound`.
   */
  erase(caller: Caller, id: string): Promise<VideoTombstone>;
}

export function createVideoEraser(options: VideoEraserOptions): VideoEraser {
  const { videos, bus, clock, logger } = options;
  return {
    async erase(caller, id) {
      const { client } = caller;
      const tombstone = await videos.erase(client.id, id, clock.now(), caller.endUserId ?? undefined);
      if (tombstone === undefined) throw new VideoNotFound();
      // A running generation still finishes (and is charged) upstream: nothing is polled for it any more.
      logger.info({ videoId: id, clientId: client.id }, 'video deleted');
      bus.publish({ deleted: tombstone });
      return tombstone;
    },
  };
}
