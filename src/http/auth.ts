import type { FastifyInstance, FastifyRequest } from 'fastify';

import type { Client } from '../auth/clients.js';
import { ProblemError } from './problems.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated client on `/videos` routes. */
    client: Client | null;
  }
}

export type Authenticate = (authorization: string | undefined) => Client | undefined;

/** Bearer auth for every route of the plugin it is registered in (before the body is even read). */
export function requireClient(app: FastifyInstance, authenticate: Authenticate): void {
  app.addHook('onRequest', async (request) => {
    const client = authenticate(request.headers.authorization);
    if (client === undefined) {
      throw new ProblemError('unauthorized', 'Send a valid API key as `Authorization: Bearer <key>`.', {
        headers: { 'www-authenticate': 'Bearer realm="videos"' },
      });
    }
    request.client = client;
  });
}

/** The client set by `requireClient`; routes registered behind it always have one. */
export function clientOf(request: FastifyRequest): Client {
  if (request.client === null) throw new ProblemError('unauthorized', 'Send a valid API key as `Authorization: Bearer <key>`.');
  return request.client;
}
