/**
 * The edges of request parsing Fastify handles before any hook or error handler: malformed URLs and strict JSON
 * bodies. Both end as RFC 9457 problems like every other error.
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';

import type { ConnectionError, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { buildProblem, ProblemError, sendProblem, toProblem } from './problems.js';

/**
 * Fastify's `frameworkErrors`: a path segment that is not valid percent-encoding (`%zz`, a truncated UTF-8
 * sequence) or longer than `maxParamLength` is refused before routing — by default with Fastify's own JSON and
 * no request id. It is the client's malformed URL: a 400 problem.
 */
export function answerFrameworkError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  reply.header('x-request-id', request.id);
  const problem =
    error.code === 'FST_ERR_BAD_URL' || error.code === 'FST_ERR_MAX_PARAM_LENGTH'
      ? new ProblemError('validation_failed', 'The URL is not valid: a path segment is malformed or too long.', {
          errors: [{ path: '/url', message: 'has a malformed or overlong path segment' }],
        })
      : toProblem(error);
  request.log.info({ code: problem.code, fastifyCode: error.code }, 'request refused before routing');
  void sendProblem(reply, problem);
}

/**
 * `application/json` bodies must be UTF-8 (RFC 8259 §8.1). Fastify's default parser decodes invalid bytes to
 * U+FFFD and carries on, so a mangled prompt would be stored and sent upstream; this one refuses them, then parses
 * with Fastify's own parser (prototype-poisoning checks included).
 */
export function useStrictJsonParser(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    let text: string;
    try {
      text = utf8.decode(body as Buffer);
    } catch {
      done(
        new ProblemError('validation_failed', 'The request body is not valid UTF-8; JSON must be UTF-8.', {
          errors: [{ path: '/body', message: 'is not valid UTF-8' }],
        }),
        undefined,
      );
      return;
    }
    // Callback style: it answers through `done`, so the value it returns carries nothing.
    void parseJson(request, text, done);
  });
}

/** The problem for an error Node's HTTP parser (or its request/headers timeout) raised before any request existed. */
function connectionProblem(error: ConnectionError): ProblemError {
  switch (error.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new ProblemError('request_timeout', 'The request was not received in time; send it again, whole.');
    case 'HPE_HEADER_OVERFLOW':
      return new ProblemError('headers_too_large', 'The request headers are too large.');
    default:
      return new ProblemError('validation_failed', 'The request is not valid HTTP.');
  }
}

/**
 * Fastify's `clientErrorHandler`: what Node's parser refuses (a malformed request line, headers over the size limit,
 * a request or headers timeout) is answered before any hook runs — by default with Fastify's own JSON and no
 * request id. This writes a problem like every other, with a fresh `x-request-id` (there is no request to take one
 * from), then closes the connection: a client that broke the protocol cannot be trusted to frame the next request.
 */
export function answerClientError(requestId: () => string): (this: FastifyInstance, error: ConnectionError, socket: Socket) => void {
  return function answer(this: FastifyInstance, error, socket) {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const id = requestId();
    const problem = connectionProblem(error);
    this.log.debug({ reqId: id, code: problem.code, parserCode: error.code }, 'request refused by the HTTP parser');
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const body = JSON.stringify(buildProblem(problem, id));
    const head = [
      `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? 'Error'}`,
      'content-type: application/problem+json; charset=utf-8',
      `content-length: ${Buffer.byteLength(body)}`,
      `x-request-id: ${id}`,
      'cache-control: no-store',
      'x-content-type-options: nosniff',
      'connection: close',
    ];
    // Destroyed once written, never half-open: the client may still be sending.
    socket.end(`${head.join('\r\n')}\r\n\r\n${body}`, () => socket.destroy());
  };
}

/**
 * A compressed request body (`Content-Encoding: gzip`, `br`, …) is refused with 415 and `Accept-Encoding: identity`
 * (RFC 7694) rather than parsed as if it were plain. Bodies are at most 64 KiB, so compression gains little, and
 * not decoding leaves no decompression bomb to bound. Runs after authentication (`preParsing`): a 401 comes first.
 */
export function refuseEncodedBodies(app: FastifyInstance): void {
  app.addHook('preParsing', async (request, _reply, payload) => {
    const encoding = request.headers['content-encoding']?.trim().toLowerCase();
    const hasBody = request.headers['transfer-encoding'] !== undefined || Number(request.headers['content-length'] ?? 0) > 0;
    if (encoding !== undefined && encoding !== '' && encoding !== 'identity' && hasBody) {
      throw new ProblemError(
        'unsupported_media_type',
        `Request bodies must not be compressed (Content-Encoding: ${encoding.slice(0, 40)}); send plain JSON.`,
        { headers: { 'accept-encoding': 'identity' } },
      );
    }
    return payload;
  });
}
