import type { FastifyInstance } from 'fastify';

/**
 * An answer sent before the request body was read (a 401 from the `onRequest` auth hook, a 404, a 413 by
 * `content-length`, a 415) closes the connection instead of keeping it alive: otherwise Node reads and discards
 * the rest of the body to reach the next request, and a caller without a key could hold the connection open for
 * as long as it trickles bytes. The body is refused before it is read, and so is the connection.
 */
export function closeConnectionsWithUnreadBodies(app: FastifyInstance): void {
  app.addHook('onSend', async (request, reply) => {
    if (!request.raw.complete) reply.header('connection', 'close');
  });
}
