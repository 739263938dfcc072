/**
 * The edges of request parsing Fastify handles before any hook or error handler: malformed URLs and strict JSON
 * bodies. Both end as RFC 9457 problems like every other error.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { isJsonObject } from '../lib/json.js';
import { ProblemError, sendProblem, toProblem } from './problems.js';

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
  request.log.debug({ code: problem.code, fastifyCode: error.code }, 'request refused before routing');
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

/**
 * For routes that take no body (`onRequest`): an empty body is no body, whatever its content type says — curl's
 * `-d ''` sends `application/x-www-form-urlencoded`, Swagger UI and fetch may send `application/json` with nothing.
 */
export async function ignoreEmptyBody(request: FastifyRequest): Promise<void> {
  const { headers } = request;
  if (headers['transfer-encoding'] === undefined && (headers['content-length'] === undefined || headers['content-length'] === '0')) {
    delete headers['content-type'];
  }
}

/** For routes that take no body (`preValidation`): none, or `{}`; anything else is a 400 rather than ignored. */
export async function requireNoBody(request: FastifyRequest): Promise<void> {
  const { body } = request;
  if (body === undefined || body === null || (isJsonObject(body) && Object.keys(body).length === 0)) return;
  throw new ProblemError('validation_failed', 'This route takes no body: send none, an empty body, or {}.', {
    errors: [{ path: '/body', message: 'must be empty or {}' }],
  });
}
