import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

import { noSecurity, problemsFor, requestIdHeader } from '../src/http/responses.js';
import type { GatewayMetrics } from '../src/metrics.js';

export interface MetricsRoutesOptions {
  metrics: GatewayMetrics;
}

export const metricsRoutes: FastifyPluginAsyncTypebox<MetricsRoutesOptions> = async (app, { metrics }) => {
  app.get(
    '/metrics',
    {
      schema: {
        tags: ['operations'],
        operationId: 'metrics',
        summary: 'Prometheus metrics',
        description:
          'Prometheus text exposition (prom-client): HTTP requests by route pattern, status and duration; upstream calls ' +
          'by operation, outcome and latency; circuit breaker state; videos in flight; time to terminal state; webhook ' +
          'deliveries by outcome and latency; cache lookups; process metrics. Metric names start with `gateway_` ' +
          '(process metrics keep their standard names). Open like `/healthz`: expose it to your scraper only.',
        security: noSecurity(),
        response: {
          200: {
            description: 'The metrics in the Prometheus text format 0.0.4.',
            headers: requestIdHeader,
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
          ...problemsFor(400),
        },
      },
    },
    async (_request, reply) =>
      reply
        .type(metrics.contentType)
        .header('cache-control', 'no-store')
        .send(await metrics.render()),
  );
};
