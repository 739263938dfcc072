import type { FastifyInstance, FastifyRequest } from 'fastify';

import type { Authenticator, Caller } from '../auth/caller.js';
import type { Client } from '../auth/clients.js';
import { narrowCorsToClient } from './cors.js';
import { ProblemError } from './problems.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller on `/videos` routes: an app server (API key) or an end user (JWT). */
    caller: Caller | null;
  }
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route also accepts `?token=<stream token>` for the video in its `:id` (only the events stream). */
    acceptsStreamToken?: boolean;
  }
}

export type Authenticate = Authenticator;

/**
 * The caller a stream token was minted for (its client and, for an end user's token, that end user), when it is
 * valid for this video now; else undefined.
 */
export type AuthenticateStreamToken = (token: string, videoId: string) => Caller | undefined;

const unauthorized = (detail: string): ProblemError =>
  new ProblemError('unauthorized', detail, { headers: { 'www-authenticate': 'Bearer realm="videos"' } });

/** The `?token=` of a route that accepts stream tokens, when the request sends no `Authorization`. */
function streamTokenOf(request: FastifyRequest): { token: string; videoId: string } | undefined {
  if (request.routeOptions.config.acceptsStreamToken !== true || request.headers.authorization !== undefined) return undefined;
  const token: unknown = (request.query as Record<string, unknown> | undefined)?.['token'];
  const videoId: unknown = (request.params as Record<string, unknown> | undefined)?.['id'];
  return typeof token === 'string' && typeof videoId === 'string' ? { token, videoId } : undefined;
}

/**
 * Bearer auth (API key or end-user JWT) for every route of the plugin it is registered in, before the body is
 * read. A route marked `acceptsStreamToken` also takes `?token=`; anywhere else a token is ignored, so it is a
 * 401 like no credential. Then CORS is narrowed to the caller's client.
 */
export function requireClient(app: FastifyInstance, authenticate: Authenticate, authenticateStreamToken?: AuthenticateStreamToken): void {
  app.addHook('onRequest', async (request, reply) => {
    const streamToken = authenticateStreamToken === undefined ? undefined : streamTokenOf(request);
    let caller: Caller;
    if (streamToken !== undefined) {
      const granted = authenticateStreamToken?.(streamToken.token, streamToken.videoId);
      // Never echoes the token: the detail is the same for a forged, expired or other-video token.
      if (granted === undefined) {
        throw new ProblemError(
          'unauthorized',
          'The stream token is not valid for this video (forged, expired or for another video): mint a new one.',
        );
      }
      caller = granted;
    } else {
      const authentication = await authenticate(request.headers.authorization);
      if (!authentication.ok) throw unauthorized(authentication.detail);
      caller = authentication.caller;
    }
    request.caller = caller;
    narrowCorsToClient(request, reply, caller.client);
  });
}

/** Routes for app servers only (deliveries, redelivery): an end user gets 403 `forbidden`, before anything else. */
export function forbidEndUsers(app: FastifyInstance): void {
  app.addHook('onRequest', async (request) => {
    if (request.caller?.kind === 'end_user') throw forbiddenForEndUsers();
  });
}

const forbiddenForEndUsers = (): ProblemError =>
  new ProblemError('forbidden', 'This route is for app servers: call it with the client API key, not an end-user token.');

/** The caller set by `requireClient`; routes registered behind it always have one. */
export function callerOf(request: FastifyRequest): Caller {
  if (request.caller === null) throw unauthorized('Send a client API key or an end-user token as `Authorization: Bearer <credential>`.');
  return request.caller;
}

/**
 * The client of an app-server caller. An end user is refused (403): a route that only knows clients cannot scope
 * to one end user, so it is for app servers until it takes a `Caller`.
 */
export function clientOf(request: FastifyRequest): Client {
  const caller = callerOf(request);
  if (caller.kind === 'end_user') throw forbiddenForEndUsers();
  return caller.client;
}
