/**
 * The webhook request (DESIGN §3): body and Standard Webhooks signature headers. Pure.
 */
import { Webhook } from 'standardwebhooks';

import type { WebhookEvent } from '../../schemas/deliveries.js';
import type { WebhookEventType } from '../../schemas/video.js';
import { toIso } from '../clock.js';
import type { VideoRecord } from '../store/records.js';
import { toVideo } from '../videos/present.js';

/**
 * `{ type, timestamp, data }`: `timestamp` is when the event happened, `data` the public Video (never the upstream
 * id). `data.webhook` is always null: the summary describes deliveries, which this very request is one of.
 */
export function buildWebhookPayload(eventType: WebhookEventType, occurredAt: number, video: VideoRecord): string {
  const event: WebhookEvent = { type: eventType, timestamp: toIso(occurredAt), data: toVideo(video, null) };
  return JSON.stringify(event);
}

export interface SignedHeaders {
  'content-type': 'application/json';
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/** Headers for one attempt: the id is stable per event, the timestamp (and so the signature) is per attempt. */
export function signWebhook(secret: string, messageId: string, attemptAt: number, body: string): SignedHeaders {
  const timestamp = new Date(attemptAt);
  return {
    'content-type': 'application/json',
    'webhook-id': messageId,
    'webhook-timestamp': String(Math.floor(attemptAt / 1000)),
    'webhook-signature': new Webhook(secret).sign(messageId, timestamp, body),
  };
}
