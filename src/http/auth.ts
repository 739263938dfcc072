import type { FastifyInstance, FastifyRequest } from 'fastify';

import type { Authenticator, Caller } from '../auth/caller.js';
import type { Client } from '../auth/clients.js';
import { ProblemError } from './problems.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller on `/videos` routes: an app server (API key) or an end user (JWT). */
    caller: Caller | null;
  }
}

export type Authenticate = Authenticator;

const unauthorized = (detail: string): ProblemError =>
  new ProblemError('unauthorized', detail, { headers: { 'www-authenticate': 'Bearer realm="videos"' } });

/** Bearer auth (API key or end-user JWT) for every route of the plugin it is registered in, before the body is read. */
export function requireClient(app: FastifyInstance, authenticate: Authenticate): void {
  app.addHook('onRequest', async (request) => {
    const authentication = await authenticate(request.headers.authorization);
    if (!authentication.ok) throw unauthorized(authentication.detail);
    request.caller = authentication.caller;
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
