import type { FastifyInstance, FastifyRequest } from 'fastify';

import type { Client } from '../auth/clients.js';
import { narrowCorsToClient } from './cors.js';
import { ProblemError } from './problems.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated client on `/videos` routes. */
    client: Client | null;
  }
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route also accepts `?token=<stream token>` for the video in its `:id` (only the events stream). */
    acceptsStreamToken?: boolean;
  }
}

export type Authenticate = (authorization: string | undefined) => Client | undefined;

/** The client a stream token was minted for, when it is valid for this video now; else undefined. */
export type AuthenticateStreamToken = (token: string, videoId: string) => Client | undefined;

/** The `?token=` of a route that accepts stream tokens, when the request sends no `Authorization`. */
function streamTokenOf(request: FastifyRequest): { token: string; videoId: string } | undefined {
  if (request.routeOptions.config.acceptsStreamToken !== true || request.headers.authorization !== undefined) return undefined;
  const token: unknown = (request.query as Record<string, unknown> | undefined)?.['token'];
  const videoId: unknown = (request.params as Record<string, unknown> | undefined)?.['id'];
  return typeof token === 'string' && typeof videoId === 'string' ? { token, videoId } : undefined;
}

/**
 * Bearer auth for every route of the plugin it is registered in (before the body is even read). A route marked
 * `acceptsStreamToken` also takes `?token=`; anywhere else a token is ignored, so it is a 401 like no credential.
 */
export function requireClient(app: FastifyInstance, authenticate: Authenticate, authenticateStreamToken?: AuthenticateStreamToken): void {
  app.addHook('onRequest', async (request, reply) => {
    const streamToken = authenticateStreamToken === undefined ? undefined : streamTokenOf(request);
    const client =
      streamToken === undefined
        ? authenticate(request.headers.authorization)
        : authenticateStreamToken?.(streamToken.token, streamToken.videoId);
    if (client === undefined) {
      if (streamToken !== undefined) {
        // Never echoes the token: the detail is the same for a forged, expired or other-video token.
        throw new ProblemError(
          'unauthorized',
          'The stream token is not valid for this video (forged, expired or for another video): mint a new one.',
        );
      }
      throw new ProblemError('unauthorized', 'Send a valid API key as `Authorization: Bearer <key>`.', {
        headers: { 'www-authenticate': 'Bearer realm="videos"' },
      });
    }
    request.client = client;
    narrowCorsToClient(request, reply, client);
  });
}

/** The client set by `requireClient`; routes registered behind it always have one. */
export function clientOf(request: FastifyRequest): Client {
  if (request.client === null) throw new ProblemError('unauthorized', 'Send a valid API key as `Authorization: Bearer <key>`.');
  return request.client;
}
