import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

import { Liveness, Readiness } from '../schemas/health.js';
import type { ReadinessCheck } from '../src/readiness.js';

export interface HealthRoutesOptions {
  readiness: ReadinessCheck;
}

export const healthRoutes: FastifyPluginAsyncTypebox<HealthRoutesOptions> = async (app, { readiness }) => {
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['operations'],
        operationId: 'liveness',
        summary: 'Liveness',
        description: 'Answers 200 while the process serves HTTP.',
        response: { 200: Liveness },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['operations'],
        operationId: 'readiness',
        summary: 'Readiness',
        description:
          'Answers 200 when the store takes a write (a heartbeat row, at most every 5 s; a database file deleted or replaced ' +
          'under the gateway counts as failing) and the upstream accepts the gateway key, 503 otherwise. Reports the upstream ' +
          'circuit state: an open circuit alone keeps 200 (reads, long-polls and webhooks still work, and every replica ' +
          'shares the same upstream), while `POST /videos` answers 503 `upstream_unavailable` until it closes.',
        response: { 200: Readiness, 503: Readiness },
      },
    },
    async (_request, reply) => {
      const body = await readiness.check();
      return reply.code(body.status === 'ready' ? 200 : 503).send(body);
    },
  );
};
