import { type Static, Type } from '@sinclair/typebox';

import { Nullable, RefTo, Timestamp } from './common.js';
import { Video, WebhookEventType } from './video.js';

const MessageId = Type.String({
  pattern: '^msg_',
  description: 'The `webhook-id` header: stable across retries and redeliveries of one event.',
});

/** The body of every webhook request (DESIGN §3). */
export const WebhookEvent = Type.Object(
  {
    type: WebhookEventType,
    timestamp: { ...Timestamp, description: 'When the event happened (ISO 8601, UTC); the same on every retry.' },
    data: RefTo(Video),
  },
  {
    $id: 'WebhookEvent',
    additionalProperties: false,
    description:
      'Sent as `POST <callbackUrl>` with `content-type: application/json`, `webhook-id`, `webhook-timestamp` and ' +
      '`webhook-signature` (Standard Webhooks, HMAC-SHA256 with your `whsec_…` secret). `data` is the Video as of the ' +
      'first attempt (`data.webhook` is always null); retries and redeliveries send the same bytes under the same `webhook-id`.',
  },
);
export type WebhookEvent = Static<typeof WebhookEvent>;

export const DeliveryAttempt = Type.Object(
  {
    messageId: MessageId,
    eventType: WebhookEventType,
    attempt: Type.Integer({ minimum: 1, description: 'Attempt number for this event (redeliveries continue the count).' }),
    at: { ...Timestamp, description: 'When the attempt started.' },
    durationMs: Type.Integer({ minimum: 0 }),
    responseStatus: Nullable(Type.Integer(), { description: "The receiver's HTTP status; null when it gave none." }),
    error: Nullable(Type.String(), {
      description: 'Why the attempt failed when the status alone does not say (network error, timeout, refused address, redirect, 410).',
    }),
  },
  { $id: 'DeliveryAttempt', additionalProperties: false },
);
export type DeliveryAttempt = Static<typeof DeliveryAttempt>;

export const DeliveryList = Type.Object(
  { data: Type.Array(RefTo(DeliveryAttempt), { description: 'Newest first; at most the 100 latest attempts.' }) },
  { additionalProperties: false },
);
export type DeliveryList = Static<typeof DeliveryList>;

export const RedeliveryAccepted = Type.Object(
  {
    messageId: MessageId,
    eventType: WebhookEventType,
    status: Type.Literal('pending', { description: 'The event is queued for delivery again.' }),
  },
  { additionalProperties: false },
);
export type RedeliveryAccepted = Static<typeof RedeliveryAccepted>;
