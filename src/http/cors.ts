import type { FastifyCorsOptions } from '@fastify/cors';
import type { FastifyReply, FastifyRequest } from 'fastify';

import type { Client } from '../auth/clients.js';

/*
 * CORS (DESIGN §2.4) with @fastify/cors. Each client lists `allowedOrigins`; a browser page on one of them may call
 * the gateway with that client's credentials. Two steps, because a preflight carries no credential:
 *   1. before routing, any origin listed by SOME client is answered (preflights included): the union is the
 *      most a preflight can know, and a preflight grants nothing by itself;
 *   2. once a request is authenticated, `narrowCorsToClient` removes the CORS headers again unless the caller's own
 *      client lists the origin, so a page on client A's origin cannot read client B's answers with B's key.
 * Unauthenticated answers (a 401, /healthz) keep step 1's headers, so a listed page can read why it was refused.
 * An origin nobody lists gets no CORS headers at all (a preflight from it is a 404).
 */

/** Headers a browser may send: credentials, JSON bodies, retries and conditional reads. */
export const corsAllowedHeaders = ['authorization', 'content-type', 'idempotency-key', 'if-none-match', 'x-request-id'];

/** Response headers a page may read besides the CORS-safelisted ones. */
export const corsExposedHeaders = [
  'etag',
  'location',
  'x-request-id',
  'x-ratelimit-limit',
  'x-ratelimit-remaining',
  'x-ratelimit-reset',
  'retry-after',
  'idempotent-replayed',
];

/** @fastify/cors options answering the union of the clients' origins. */
export function corsOptions(clients: readonly Pick<Client, 'allowedOrigins'>[]): FastifyCorsOptions {
  const known = new Set(clients.flatMap((client) => client.allowedOrigins));
  return {
    origin: (origin, callback) => callback(null, origin !== undefined && known.has(origin) ? origin : false),
    methods: ['GET', 'HEAD', 'POST', 'DELETE'],
    allowedHeaders: corsAllowedHeaders,
    exposedHeaders: corsExposedHeaders,
    credentials: false,
    // Browsers cap it (Chromium at 2 h); 10 minutes keeps a changed clients file effective soon.
    maxAge: 600,
    // A preflight missing Access-Control-Request-Method is still answered, rather than with a plain-text 400.
    strictPreflight: false,
    hideOptionsRoute: true,
  };
}

/** Step 2 above: after authentication, CORS headers stay only when the caller's client lists the origin. */
export function narrowCorsToClient(request: FastifyRequest, reply: FastifyReply, client: Pick<Client, 'allowedOrigins'>): void {
  const origin = request.headers.origin;
  if (origin === undefined || !reply.hasHeader('access-control-allow-origin')) return;
  if (client.allowedOrigins.includes(origin)) return;
  reply.removeHeader('access-control-allow-origin');
  reply.removeHeader('access-control-expose-headers');
}
