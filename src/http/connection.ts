import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * Calls `callback` once when the client's connection goes away (or at once if it already has), so a waiter
 * releases its bus listener and timers on disconnect instead of at its timeout. `close` on the response fires
 * both on a dropped connection and after a normal end; callers make their cleanup idempotent.
 */
export function whenClientLeaves(request: FastifyRequest, reply: FastifyReply, callback: () => void): void {
  if (request.raw.socket?.destroyed === true || reply.raw.destroyed) {
    callback();
    return;
  }
  reply.raw.once('close', callback);
}
