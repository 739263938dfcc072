import type { FastifyDynamicSwaggerOptions } from '@fastify/swagger';

/** The OpenAPI document's frame; paths and components come from the route schemas (schemas/). */
export const openapiOptions: FastifyDynamicSwaggerOptions = {
  openapi: {
    openapi: '3.1.0',
    info: {
      title: 'Video gateway',
      version: '1.0.0',
      description:
        'Generate short videos with Luma Dream Machine through ElkAPI. Authenticate with your client API key (app ' +
        'servers) or an end-user JWT of your identity provider (phones, browsers: only their own videos); the gateway ' +
        'polls the upstream, caches finished videos and sends signed webhooks (Standard Webhooks). Errors are RFC 9457 ' +
        'problem details (`application/problem+json`) with a stable `code`. Every response carries `x-request-id`.',
    },
    servers: [{ url: '/', description: 'This gateway' }],
    tags: [
      { name: 'videos', description: 'Start generations and read their state and results.' },
      { name: 'webhooks', description: 'Webhook delivery log, redelivery and endpoint tests.' },
      { name: 'operations', description: 'Health, readiness and metrics for operators.' },
    ],
    // The request the gateway sends to a video's `callbackUrl` (OpenAPI 3.1 `webhooks`).
    webhooks: {
      videoEvent: {
        post: {
          tags: ['webhooks'],
          operationId: 'videoEvent',
          // The gateway calls you: authenticate it by the signature, not by a credential.
          security: [],
          summary: 'A video event, POSTed to your callbackUrl',
          description:
            'Sent for each event in the video’s `webhookEvents` (default `video.completed` and `video.failed`; ' +
            '`video.processing` on request), signed per [Standard Webhooks](https://www.standardwebhooks.com/): verify ' +
            '`webhook-signature` over `webhook-id.webhook-timestamp.body` with your `whsec_…` secret (e.g. with the ' +
            '`standardwebhooks` library) before trusting the body. Delivery is at least once: dedupe by `webhook-id`, ' +
            'which stays the same across retries and redeliveries. Any 2xx within 15 s is success; redirects are not ' +
            'followed; `410 Gone` stops retries for the event; anything else is retried after 5 s, 5 min, 30 min, 2 h, ' +
            '5 h, 10 h, 14 h, 20 h and 24 h (±20 %), honouring `Retry-After` on 429 and 503. Events may arrive out of order: ' +
            'compare `data.updatedAt` or `data.status`.',
          parameters: [
            { name: 'webhook-id', in: 'header', required: true, schema: { type: 'string' }, description: '`msg_…`: the event’s id.' },
            {
              name: 'webhook-timestamp',
              in: 'header',
              required: true,
              schema: { type: 'string' },
              description: 'Unix seconds of this attempt; reject ones far from your clock (the libraries allow 5 minutes).',
            },
            {
              name: 'webhook-signature',
              in: 'header',
              required: true,
              schema: { type: 'string' },
              description: '`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with your secret.',
            },
          ],
          requestBody: {
            required: true,
            content: { 'application/json': { schema: { $ref: '#/components/schemas/WebhookEvent' } } },
          },
          responses: {
            '2XX': { description: 'Received: no more attempts for this event.' },
            '410': { description: 'Gone: stop sending this event.' },
            default: { description: 'Anything else (3xx included) is retried on the schedule.' },
          },
        },
      },
    },
    components: {
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          description:
            'App servers and partners: your client API key (`vgk_…`). Sees every video of the client; the only ' +
            'credential for webhook deliveries. Never ship it in a mobile or browser app.',
        },
        endUserAuth: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description:
            "End users (a phone, a browser): a short-lived JWT from the app's own identity provider, accepted when the " +
            "client's `endUsers` in the clients file names its `iss` and `aud`; verified against that provider's JWKS. " +
            'Sees, lists, waits on and streams only its own videos (`endUserId` = the token’s `sub`); cannot set ' +
            '`callbackUrl`; webhook deliveries answer 403 `forbidden`.',
        },
        streamToken: {
          type: 'apiKey',
          in: 'query',
          name: 'token',
          description: 'A 5-minute token from `POST /videos/{id}/stream-tokens`: `GET /videos/{id}/events` of that video only.',
        },
      },
    },
  },
  refResolver: {
    // Shared schemas keep their `$id` as the component name (Video, Problem, …).
    buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json['$id'] === 'string' ? json['$id'] : `def-${i}`),
  },
};
