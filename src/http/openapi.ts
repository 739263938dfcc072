import type { FastifyDynamicSwaggerOptions } from '@fastify/swagger';

/** The OpenAPI document's frame; paths and components come from the route schemas (schemas/). */
export const openapiOptions: FastifyDynamicSwaggerOptions = {
  openapi: {
    openapi: '3.1.0',
    info: {
      title: 'Video gateway',
      version: '1.0.0',
      description:
        "Generate short videos with Luma Dream Machine through ElkAPI. Authenticate with your own API key; the gateway " +
        'polls the upstream, caches finished videos and sends signed webhooks (Standard Webhooks). Errors are RFC 9457 ' +
        'problem details (`application/problem+json`) with a stable `code`. Every response carries `x-request-id`.',
    },
    servers: [{ url: '/', description: 'This gateway' }],
    tags: [
      { name: 'videos', description: 'Start generations and read their state and results.' },
      { name: 'webhooks', description: 'Webhook delivery log and redelivery.' },
      { name: 'operations', description: 'Health, readiness and metrics for operators.' },
    ],
    components: {
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: 'Your client API key (`vgk_…`).' },
      },
    },
  },
  refResolver: {
    // Shared schemas keep their `$id` as the component name (Video, Problem, …).
    buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json['$id'] === 'string' ? json['$id'] : `def-${i}`),
  },
};
