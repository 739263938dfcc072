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

/** `POST /webhooks/test` body. */
export const WebhookTestRequest = Type.Object(
  {
    callbackUrl: Type.String({
      minLength: 1,
      maxLength: 2048,
      description: 'The endpoint to test: the same rules as a video’s `callbackUrl` (absolute `https`, a public host).',
    }),
  },
  { additionalProperties: false, examples: [{ callbackUrl: 'https://receiver.example.test/hooks/videos' }] },
);
export type WebhookTestRequest = Static<typeof WebhookTestRequest>;

/** The body the test sends: signed like every webhook, `type` always `webhook.test`. */
export const WebhookTestEvent = Type.Object(
  {
    type: Type.Literal('webhook.test'),
    timestamp: Timestamp,
    data: Type.Object({ clientId: Type.String(), message: Type.String() }, { additionalProperties: false }),
  },
  { additionalProperties: false },
);
export type WebhookTestEvent = Static<typeof WebhookTestEvent>;

export const WebhookTestResult = Type.Object(
  {
    messageId: MessageId,
    callbackUrl: Type.String({ description: 'The URL as sent to (normalised).' }),
    delivered: Type.Boolean({ description: 'The receiver answered 2xx, as a real delivery needs.' }),
    responseStatus: Nullable(Type.Integer(), { description: "The receiver's HTTP status; null when it gave none." }),
    durationMs: Type.Integer({ minimum: 0, description: 'From sending to the answer (or the failure).' }),
    error: Nullable(Type.String(), {
      description: 'Why it failed when the status alone does not say (network, timeout, refused address, redirect).',
    }),
  },
  {
    $id: 'WebhookTestResult',
    additionalProperties: false,
    examples: [
      {
        messageId: 'msg_01JDXYZ8M6X1ZP3V9R4QK7T2HC',
        callbackUrl: 'https://receiver.example.test/hooks/videos',
        delivered: true,
        responseStatus: 204,
        durationMs: 42,
        error: null,
      },
    ],
  },
);
export type WebhookTestResult = Static<typeof WebhookTestResult>;
