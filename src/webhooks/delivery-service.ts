/**
 * The client-facing side of webhooks: a video's delivery log and redelivery (DESIGN §2.4). Routes call this;
 * it holds the rules (ownership, terminal-only redelivery) and maps store answers to problems.
 */
import type { DeliveryAttempt, RedeliveryAccepted } from '../../schemas/deliveries.js';
import type { Client } from '../auth/clients.js';
import { toIso, type Clock } from '../clock.js';
import type { EventBus } from '../events/bus.js';
import { ProblemError } from '../http/problems.js';
import type { Logger } from '../lib/logger.js';
import type { VideoStore } from '../store/types.js';

/** `GET /videos/{id}/deliveries` lists at most this many attempts (the newest). */
export const DELIVERY_LOG_LIMIT = 100;

export interface DeliveryServiceOptions {
  store: VideoStore;
  bus: EventBus;
  clock: Clock;
  logger: Logger;
}

export interface DeliveryService {
  list(client: Client, videoId: string): Promise<DeliveryAttempt[]>;
  redeliver(client: Client, videoId: string): Promise<RedeliveryAccepted>;
}

export function createDeliveryService(options: DeliveryServiceOptions): DeliveryService {
  const { store, bus, clock, logger } = options;
  const notFound = (): ProblemError => new ProblemError('not_found', 'No video with this id.');

  /** Another client's video is not found, exactly like an unknown id. */
  const ownVideo = async (client: Client, videoId: string) => {
    const video = await store.getVideo(videoId);
    if (video === undefined || video.clientId !== client.id) throw notFound();
    return video;
  };

  return {
    async list(client, videoId) {
      await ownVideo(client, videoId);
      const attempts = await store.listDeliveryAttempts(videoId, DELIVERY_LOG_LIMIT);
      return attempts.map((entry) => ({
        messageId: entry.messageId,
        eventType: entry.eventType,
        attempt: entry.attempt,
        at: toIso(entry.at),
        durationMs: entry.durationMs,
        responseStatus: entry.responseStatus,
        error: entry.error,
      }));
    },

    async redeliver(client, videoId) {
      await ownVideo(client, videoId);
      const result = await store.redeliver(videoId, clock.now());
      switch (result.kind) {
        case 'not_found':
          throw notFound();
        case 'not_terminal':
          throw new ProblemError('video_not_terminal', 'Only the terminal event is redelivered: wait until the video is completed or failed.');
        case 'no_webhook':
          throw new ProblemError(
            'not_found',
            'This video has no webhook to redeliver: it has no callbackUrl, or its terminal event is not in webhookEvents.',
          );
        case 'enqueued':
          logger.info({ videoId, messageId: result.messageId, eventType: result.eventType }, 'webhook redelivery enqueued');
          // The summary is 'pending' again: caches drop the old body, listeners see it, the dispatcher wakes.
          bus.publish({ video: result.video });
          return { messageId: result.messageId, eventType: result.eventType, status: 'pending' };
      }
    },
  };
}
