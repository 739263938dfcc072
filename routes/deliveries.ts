import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

import { RefTo } from '../schemas/common.js';
import { DeliveryList, RedeliveryAccepted, WebhookTestRequest, WebhookTestResult } from '../schemas/deliveries.js';
import { VideoParams } from '../schemas/video.js';
import { type Authenticate, clientOf, forbidEndUsers, requireClient } from '../src/http/auth.js';
import type { ClientRateLimits } from '../src/http/client-rate-limits.js';
import { ignoreEmptyBody, requireNoBody } from '../src/http/request-parsing.js';
import { bearerSecurity, jsonResponse, problemResponse, problemsFor, rateLimitHeaders } from '../src/http/responses.js';
import type { DeliveryService } from '../src/webhooks/delivery-service.js';
import type { WebhookTester } from '../src/webhooks/test-event.js';

export interface DeliveryRoutesOptions {
  deliveries: DeliveryService;
  /** `POST /webhooks/test`. */
  webhookTester: WebhookTester;
  authenticate: Authenticate;
  /** The per-client limits of /videos, shared: these routes count against `rateLimitPerMinute` too. */
  rateLimits: ClientRateLimits;
}

export const deliveryRoutes: FastifyPluginAsyncTypebox<DeliveryRoutesOptions> = async (
  app,
  { deliveries, webhookTester, authenticate, rateLimits },
) => {
  requireClient(app, authenticate);
  await rateLimits.install(app);
  // The delivery log shows the app server's webhook endpoint and its answers: never an end user's business.
  forbidEndUsers(app);

  app.get(
    '/videos/:id/deliveries',
    {
      schema: {
        tags: ['webhooks'],
        operationId: 'listVideoDeliveries',
        summary: "List a video's webhook delivery attempts",
        description:
          'Every attempt to POST one of this video’s webhook events to its `callbackUrl`, newest first (the latest 100): ' +
          'the `webhook-id` (`messageId`), the event, the attempt number, when it started, how long it took, the ' +
          "receiver's HTTP status and, when the status alone does not say, why it failed (timeout, connection refused, " +
          'refused address, redirect, 410). The video itself carries a summary in `webhook`.',
        security: bearerSecurity(),
        params: VideoParams,
        response: {
          200: jsonResponse(DeliveryList, 'The attempts, newest first.', rateLimitHeaders),
          ...problemsFor(400, 401, 403, 404, 429, 500),
        },
      },
    },
    async (request) => ({ data: await deliveries.list(clientOf(request), request.params.id) }),
  );

  app.post(
    '/videos/:id/deliveries/redeliver',
    {
      schema: {
        tags: ['webhooks'],
        operationId: 'redeliverVideoWebhook',
        summary: "Send a video's terminal webhook again",
        description:
          'Queues the terminal event (`video.completed` or `video.failed`) for delivery again, with the same `webhook-id` ' +
          'and the same body, and a fresh retry schedule; the video’s `webhook.status` becomes `pending`. ' +
          '`409 video_not_terminal` while the video is still running; `404` when the video has no webhook to redeliver ' +
          '(no `callbackUrl`, or its terminal event is not in `webhookEvents`). Send no body (an empty body with any ' +
          'content type, or `{}`, is accepted too).',
        security: bearerSecurity(),
        params: VideoParams,
        response: {
          202: jsonResponse(RedeliveryAccepted, 'Accepted: the event is queued.', rateLimitHeaders),
          ...problemsFor(400, 401, 403, 404, 429, 500),
          409: problemResponse(['video_not_terminal']),
        },
      },
      onRequest: ignoreEmptyBody,
      preValidation: requireNoBody,
    },
    async (request, reply) => {
      const accepted = await deliveries.redeliver(clientOf(request), request.params.id);
      return reply.code(202).send(accepted);
    },
  );

  app.post(
    '/webhooks/test',
    {
      schema: {
        tags: ['webhooks'],
        operationId: 'testWebhook',
        summary: 'Send a signed test event to an endpoint now',
        description:
          'Sends one `webhook.test` event to `callbackUrl` at once, signed with your `whsec_…` secret exactly like a ' +
          'real delivery (`webhook-id`, `webhook-timestamp`, `webhook-signature`), through the same checks (absolute ' +
          '`https`, no private or loopback address, your `allowedCallbackHosts`) and the same 15 s timeout; redirects ' +
          "are not followed. Answers 200 with the receiver's status and latency whatever the receiver answered " +
          '(`delivered` is true for a 2xx); a URL the rules refuse is a 400 naming `/body/callbackUrl`. Nothing is ' +
          'stored or retried. The body sent: `{ "type": "webhook.test", "timestamp", "data": { "clientId", "message" } }`.',
        security: bearerSecurity(),
        body: WebhookTestRequest,
        response: {
          200: jsonResponse(RefTo(WebhookTestResult), "The receiver's answer.", rateLimitHeaders),
          ...problemsFor(400, 401, 413, 415, 429, 500),
        },
      },
    },
    async (request) => webhookTester.send(clientOf(request), request.body.callbackUrl),
  );
};
