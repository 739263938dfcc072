import type { FastifyPluginAsync } from 'fastify';

import { ProblemError } from '../src/http/problems.js';
import type { UpstreamCallbacks } from '../src/tracking/upstream-callbacks.js';

export interface UpstreamCallbackRoutesOptions {
  callbacks: UpstreamCallbacks;
}

/** A callback body is read, never trusted: anything beyond this is refused with 413 before the handler runs. */
export const upstreamCallbackBodyLimit = 64 * 1024;

/**
 * `POST /upstream/callbacks/:token` (DESIGN §4.1): where the upstream reports state changes. No client key (the token
 * is the credential), no per-client rate limit (the service has its own global cap), left out of the public
 * OpenAPI document. Encapsulated: its catch-all body parser applies to this route only.
 */
export const upstreamCallbackRoutes: FastifyPluginAsync<UpstreamCallbackRoutesOptions> = async (app, { callbacks }) => {
  // Whatever the upstream sends (JSON, form, nothing) is read up to the limit and dropped: state comes from a fetch.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: upstreamCallbackBodyLimit }, (_request, _body, done) => {
    done(null, undefined);
  });

  app.post<{ Params: { token: string } }>(
    '/upstream/callbacks/:token',
    { bodyLimit: upstreamCallbackBodyLimit, schema: { hide: true } },
    async (request, reply) => {
      const outcome = await callbacks.receive(request.params.token);
      if (outcome === 'invalid') throw new ProblemError('not_found', 'No such callback.');
      if (outcome === 'throttled') {
        throw new ProblemError('rate_limited', 'Too many upstream callbacks. Retry in 1 s.', { headers: { 'retry-after': '1' } });
      }
      return reply.code(204).send();
    },
  );
};
