/**
 * The client-facing side of webhooks: a video's delivery log and redelivery (DESIGN §2.4). Routes call this;
 * it holds the rules (ownership, terminal-only redelivery) and turns store answers into domain errors.
 */
import type { DeliveryAttempt, RedeliveryAccepted } from '../../schemas/deliveries.js';
import type { Client } from '../auth/clients.js';
import { type Clock, toIso } from '../clock.js';
import { NoWebhookToRedeliver, VideoNotFound, VideoNotTerminal } from '../errors.js';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../lib/logger.js';
import type { DeliveryRepository, VideoRepository } from '../store/repositories.js';

/** `GET /videos/{id}/deliveries` lists at most this many attempts (the newest). */
const DELIVERY_LOG_LIMIT = 100;

export interface DeliveryServiceOptions {
  videos: Pick<VideoRepository, 'get'>;
  deliveries: Pick<DeliveryRepository, 'listAttempts' | 'redeliver'>;
  bus: EventBus;
  clock: Clock;
  logger: Logger;
}

export interface DeliveryService {
  list(client: Client, videoId: string): Promise<DeliveryAttempt[]>;
  redeliver(client: Client, videoId: string): Promise<RedeliveryAccepted>;
}

export function createDeliveryService(options: DeliveryServiceOptions): DeliveryService {
  const { videos, deliveries, bus, clock, logger } = options;

  /** Another client's video is not found, exactly like an unknown id. */
  const ownVideo = async (client: Client, videoId: string) => {
    const video = await videos.get(videoId);
    if (video === undefined || video.clientId !== client.id) throw new VideoNotFound();
    return video;
  };

  return {
    async list(client, videoId) {
      await ownVideo(client, videoId);
      const attempts = await deliveries.listAttempts(videoId, DELIVERY_LOG_LIMIT);
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
      const result = await deliveries.redeliver(videoId, clock.now());
      switch (result.kind) {
        case 'not_found':
          throw new VideoNotFound();
        case 'not_terminal':
          throw new VideoNotTerminal();
        case 'no_webhook':
          throw new NoWebhookToRedeliver();
        case 'enqueued':
          logger.info({ videoId, messageId: result.messageId, eventType: result.eventType }, 'webhook redelivery enqueued');
          // The webhook state is 'pending' again: caches drop the old body, listeners see it, the dispatcher wakes.
          bus.publish({ video: result.video });
          return { messageId: result.messageId, eventType: result.eventType, status: 'pending' };
      }
    },
  };
}
