import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

import { DeliveryList, RedeliveryAccepted } from '../schemas/deliveries.js';
import { VideoParams } from '../schemas/video.js';
import { type Authenticate, clientOf, forbidEndUsers, requireClient } from '../src/http/auth.js';
import type { ClientRateLimits } from '../src/http/client-rate-limits.js';
import { bearerSecurity, jsonResponse, problemsFor } from '../src/http/responses.js';
import type { DeliveryService } from '../src/webhooks/delivery-service.js';

export interface DeliveryRoutesOptions {
  deliveries: DeliveryService;
  authenticate: Authenticate;
  /** The per-client limits of /videos, shared: these routes count against `rateLimitPerMinute` too. */
  rateLimits: ClientRateLimits;
}

export const deliveryRoutes: FastifyPluginAsyncTypebox<DeliveryRoutesOptions> = async (app, { deliveries, authenticate, rateLimits }) => {
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
          200: jsonResponse(DeliveryList, 'The attempts, newest first.'),
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
          '(no `callbackUrl`, or its terminal event is not in `webhookEvents`). Send no body.',
        security: bearerSecurity(),
        params: VideoParams,
        response: {
          202: jsonResponse(RedeliveryAccepted, 'Accepted: the event is queued.'),
          ...problemsFor(400, 401, 403, 404, 409, 429, 500),
        },
      },
    },
    async (request, reply) => {
      const accepted = await deliveries.redeliver(clientOf(request), request.params.id);
      return reply.code(202).send(accepted);
    },
  );
};
