import { createHash, timingSafeEqual } from 'node:crypto';

import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

import { ProblemError } from '../src/http/problems.js';
import { bearerSecurity, problemsFor } from '../src/http/responses.js';
import type { GatewayMetrics } from '../src/metrics.js';

export interface MetricsRoutesOptions {
  metrics: GatewayMetrics;
  /** `METRICS_TOKEN`: when set, scrapes must send `Authorization: Bearer <token>`. */
  token: string | null;
}

const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

export const metricsRoutes: FastifyPluginAsyncTypebox<MetricsRoutesOptions> = async (app, { metrics, token }) => {
  if (token !== null) {
    const expected = digest(token);
    app.addHook('onRequest', async (request) => {
      const given = /^Bearer +(\S+)$/i.exec(request.headers.authorization?.trim() ?? '')?.[1];
      // Compared as digests: constant time whatever the length of what was sent.
      if (given === undefined || !timingSafeEqual(digest(given), expected)) {
        throw new ProblemError('unauthorized', 'Send the metrics token as `Authorization: Bearer <METRICS_TOKEN>`.', {
          headers: { 'www-authenticate': 'Bearer realm="metrics"' },
        });
      }
    });
  }
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
          '(process metrics keep their standard names). Open like `/healthz` unless `METRICS_TOKEN` is set; then it needs ' +
          '`Authorization: Bearer <METRICS_TOKEN>` (401 without). Expose it to your scraper only.',
        ...(token === null ? {} : { security: bearerSecurity() }),
        response: {
          200: {
            description: 'The metrics in the Prometheus text format 0.0.4.',
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
          ...(token === null ? {} : problemsFor(401)),
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
