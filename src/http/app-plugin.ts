import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';

import { deliveryRoutes } from '../../routes/deliveries.js';
import { healthRoutes } from '../../routes/health.js';
import { metricsRoutes } from '../../routes/metrics.js';
import { upstreamCallbackRoutes } from '../../routes/upstream-callbacks.js';
import { videoRoutes } from '../../routes/videos.js';
import { sharedSchemas } from '../../schemas/index.js';
import { requestCompletedMessage, type RequestLogFields } from '../lib/log-format.js';
import { sandboxAssets } from '../sandbox/assets.js';
import type { Services } from '../services.js';
import type { Authenticate, AuthenticateStreamToken } from './auth.js';
import { createClientRateLimits } from './client-rate-limits.js';
import { corsOptions } from './cors.js';
import { openapiOptions } from './openapi.js';
import { errorHandler, problemCodeOf, ProblemError, sendProblem } from './problems.js';
import { refuseEncodedBodies, useStrictJsonParser } from './request-parsing.js';
import { createMethodIndex, strictQuerystring } from './route-conventions.js';
import { docsContentSecurityPolicy, staticSecurityHeaders } from './security-headers.js';
import { closeConnectionsWithUnreadBodies } from './unread-bodies.js';
import { createValidatorCompiler } from './validation.js';

export interface GatewayAppOptions {
  services: Pick<
    Services,
    | 'clock'
    | 'clients'
    | 'videos'
    | 'creator'
    | 'eraser'
    | 'watch'
    | 'streamTokens'
    | 'deliveries'
    | 'webhookTester'
    | 'readiness'
    | 'metrics'
    | 'redis'
  > &
    Partial<Pick<Services, 'upstreamCallbacks'>>;
  authenticate: Authenticate;
  authenticateStreamToken: AuthenticateStreamToken;
  /** Serve the sandbox's sample video and thumbnail (sandbox mode). */
  serveSandboxAssets: boolean;
  /** `METRICS_TOKEN`, or null for an open `/metrics`. */
  metricsToken: string | null;
}

/**
 * The gateway's HTTP layer as one plugin: parsers, validation, hooks, security headers, docs, error handling and
 * routes over services built elsewhere. Not encapsulated (fastify-plugin), so its handlers and docs apply app-wide.
 */
const gatewayAppPlugin: FastifyPluginAsync<GatewayAppOptions> = async (
  app,
  { services, authenticate, authenticateStreamToken, serveSandboxAssets, metricsToken },
) => {
  const { videos, creator, eraser, watch, streamTokens, deliveries, webhookTester, readiness, metrics } = services;
  const rateLimits = createClientRateLimits({ clock: services.clock, shared: services.redis });

  // JSON only: a text/plain body is a 415, not a string that fails validation.
  app.removeContentTypeParser('text/plain');
  useStrictJsonParser(app);
  refuseEncodedBodies(app);
  app.setValidatorCompiler(createValidatorCompiler(sharedSchemas));
  for (const schema of sharedSchemas) app.addSchema(schema);
  app.decorateRequest('caller', null);
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  closeConnectionsWithUnreadBodies(app);
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    // The route pattern, never the raw URL: ids in label values would explode cardinality.
    metrics.recordHttpRequest(request.method, route, reply.statusCode, reply.elapsedTime);
    const code = problemCodeOf(request);
    const line: RequestLogFields = {
      method: request.method,
      // Raw here: the logger's `url` serializer redacts credentials (of any shape) and shortens it.
      url: request.url,
      route,
      statusCode: reply.statusCode,
      responseTime: Math.round(reply.elapsedTime * 10) / 10,
      ...(code === undefined ? {} : { code }),
    };
    request.log.info(line, requestCompletedMessage);
  });
  // Open long-polls and streams would hold the server's close for up to their full length.
  app.addHook('preClose', async () => watch.closeAll());
  app.setErrorHandler(errorHandler);
  const methods = createMethodIndex();
  app.addHook('onRoute', (route) => {
    strictQuerystring(route);
    methods.add(route);
  });
  app.setNotFoundHandler((request, reply) => {
    const path = (request.url.split('?')[0] ?? '').slice(0, 200);
    const allowed = methods.allowed(path);
    // A method a catch-all serves (a preflight CORS turned down) is not a wrong method: it stays a 404.
    if (allowed.length > 0 && !allowed.includes(request.method) && !methods.servedEverywhere(request.method)) {
      const allow = allowed.join(', ');
      return sendProblem(
        reply,
        new ProblemError('method_not_allowed', `${request.method} is not allowed on ${path}; use ${allow}.`, { headers: { allow } }),
      );
    }
    return sendProblem(reply, new ProblemError('not_found', `No route ${request.method} ${path}.`));
  });

  // helmet's headers, computed once: the same on every answer (Swagger UI replaces the CSP on its own routes).
  const securityHeaders = staticSecurityHeaders();
  app.addHook('onRequest', async (_request, reply) => {
    reply.headers(securityHeaders);
  });
  // Before the routes: preflights are answered ahead of authentication (they carry no credential).
  await app.register(cors, corsOptions(services.clients.all()));
  await app.register(swagger, openapiOptions);
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { deepLinking: true, persistAuthorization: true },
    staticCSP: docsContentSecurityPolicy,
  });
  await app.register(videoRoutes, { videos, creator, eraser, watch, rateLimits, authenticate, streamTokens, authenticateStreamToken });
  await app.register(deliveryRoutes, { deliveries, webhookTester, rateLimits, authenticate });
  await app.register(healthRoutes, { readiness });
  await app.register(metricsRoutes, { metrics, token: metricsToken });
  if (services.upstreamCallbacks !== undefined && services.upstreamCallbacks !== null)
    await app.register(upstreamCallbackRoutes, { callbacks: services.upstreamCallbacks });
  if (serveSandboxAssets) await app.register(sandboxAssets);
};

export const gatewayApp = fp(gatewayAppPlugin, { name: 'video-gateway', fastify: '5.x' });
