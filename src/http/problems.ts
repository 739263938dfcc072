/*
 * The one place where failures become RFC 9457 problems: the HTTP layer's own refusals (`ProblemError`: auth,
 * parsing, rate limits), domain errors (`DomainError`, src/errors.ts), upstream failures (`UpstreamError`) and
 * Fastify's framework errors. Only this file knows their statuses, headers and bodies.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';

import { type Problem, type ProblemCode, problemCodes, type ProblemFieldError } from '../../schemas/problem.js';
import { promptPattern, promptPatternMessage } from '../../schemas/video.js';
import { DomainError } from '../errors.js';
import { isJsonObject } from '../lib/json.js';
import { UpstreamError } from '../upstream/types.js';

const titles: Record<ProblemCode, string> = {
  validation_failed: 'Validation failed',
  unauthorized: 'Unauthorized',
  not_found: 'Not found',
  idempotency_key_in_use: 'Idempotency key in use',
  video_not_terminal: 'Video not terminal',
  request_timeout: 'Request timeout',
  payload_too_large: 'Payload too large',
  unsupported_media_type: 'Unsupported media type',
  headers_too_large: 'Request headers too large',
  idempotency_key_reused: 'Idempotency key reused',
  upstream_rejected: 'Upstream rejected the request',
  rate_limited: 'Rate limited',
  internal_error: 'Internal error',
  upstream_unavailable: 'Upstream unavailable',
  upstream_timeout: 'Upstream timeout',
  store_unavailable: 'Store unavailable',
};

const problemContentType = 'application/problem+json';
const problemTypeUri = (code: ProblemCode): string => `urn:problem:video-gateway:${code}`;

/** A problem the HTTP layer raises itself (auth, parsing, rate limits); domain code throws `DomainError`s. */
export class ProblemError extends Error {
  override readonly name = 'ProblemError';
  constructor(
    readonly code: ProblemCode,
    readonly detail: string,
    readonly options: {
      status?: number;
      errors?: ProblemFieldError[];
      headers?: Record<string, string>;
      cause?: unknown;
    } = {},
  ) {
    super(`${code}: ${detail}`, { cause: options.cause });
  }

  get status(): number {
    return this.options.status ?? problemCodes[this.code];
  }
}

/** Seconds for a `Retry-After` header: whole, at least 1. */
const retryAfterHeader = (seconds: number): Record<string, string> => ({ 'retry-after': String(Math.max(1, Math.ceil(seconds))) });

/** A domain rule's refusal: its code decides the status; field errors and a retry hint come along. */
function problemFromDomain(error: DomainError): ProblemError {
  const { fieldErrors, retryAfterSeconds } = error;
  return new ProblemError(error.code, error.detail, {
    ...(fieldErrors === undefined ? {} : { errors: fieldErrors }),
    ...(retryAfterSeconds === undefined ? {} : { headers: retryAfterHeader(retryAfterSeconds) }),
    cause: error,
  });
}

const upstreamUnavailable = 'The video service is temporarily unavailable; try again later.';

/** How an upstream failure during a client request reads to that client (DESIGN §2.6). */
function problemFromUpstream(error: UpstreamError): ProblemError {
  const retryAfter = error.retryAfterMs === null ? undefined : retryAfterHeader(error.retryAfterMs / 1000);
  switch (error.kind) {
    case 'rejected':
      return new ProblemError('upstream_rejected', error.safeMessage, { cause: error });
    case 'timeout':
      return new ProblemError('upstream_timeout', 'The video service did not answer in time; try again later.', { cause: error });
    // The upstream asked us to slow down, or our breaker is open after repeated outages (its retry-after says when
    // it probes again).
    case 'rate_limited':
    case 'circuit_open':
      return new ProblemError('upstream_unavailable', upstreamUnavailable, {
        status: 503,
        headers: retryAfter ?? { 'retry-after': '5' },
        cause: error,
      });
    case 'auth':
      // Our own key was refused: never a 401 to the client, whose key is fine.
      return new ProblemError('upstream_unavailable', upstreamUnavailable, { status: 503, cause: error });
    case 'not_found':
    case 'unavailable':
      return new ProblemError('upstream_unavailable', upstreamUnavailable, {
        status: 502,
        ...(retryAfter ? { headers: retryAfter } : {}),
        cause: error,
      });
  }
}

export function buildProblem(error: ProblemError, requestId: string): Problem {
  const problem: Problem = {
    type: problemTypeUri(error.code),
    title: titles[error.code],
    status: error.status,
    detail: error.detail,
    code: error.code,
    requestId,
  };
  if (error.options.errors !== undefined) problem.errors = error.options.errors;
  return problem;
}

export function sendProblem(reply: FastifyReply, error: ProblemError): FastifyReply {
  for (const [name, value] of Object.entries(error.options.headers ?? {})) reply.header(name, value);
  return reply
    .code(error.status)
    .type(problemContentType)
    .send(buildProblem(error, String(reply.request.id)));
}

interface AjvLikeError {
  instancePath?: string;
  message?: string;
  params?: Record<string, unknown>;
  keyword?: string;
}

/** Turns Fastify's schema validation errors into `{ path, message }` entries with JSON pointers. */
function validationErrors(context: string | undefined, details: readonly AjvLikeError[]): ProblemFieldError[] {
  const part = context ?? 'body';
  const seen = new Set<string>();
  const errors: ProblemFieldError[] = [];
  for (const detail of details) {
    let path = `/${part}${detail.instancePath ?? ''}`;
    const params = detail.params ?? {};
    if (typeof params['missingProperty'] === 'string') path += `/${params['missingProperty']}`;
    if (typeof params['additionalProperty'] === 'string') path += `/${params['additionalProperty']}`;
    const message =
      typeof params['additionalProperty'] === 'string'
        ? 'is not a known field'
        : params['pattern'] === promptPattern
          ? promptPatternMessage
          : (detail.message ?? 'is invalid');
    const key = `${path} ${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    errors.push({ path, message });
  }
  return errors.slice(0, 20);
}

/** A header an http-errors error (`@fastify/send`) carries for its answer, by case-insensitive name. */
function headerOf(error: unknown, name: string): string | undefined {
  const headers = isJsonObject(error) ? error['headers'] : undefined;
  if (!isJsonObject(headers)) return undefined;
  const value = Object.entries(headers).find(([key]) => key.toLowerCase() === name)?.[1];
  return typeof value === 'string' ? value : undefined;
}

/** Maps anything thrown into a ProblemError; unknown errors become a 500 without internals. */
export function toProblem(error: unknown): ProblemError {
  if (error instanceof ProblemError) return error;
  if (error instanceof DomainError) return problemFromDomain(error);
  if (error instanceof UpstreamError) return problemFromUpstream(error);
  const fastifyError = error as Partial<FastifyError> & { validation?: AjvLikeError[]; validationContext?: string };
  if (Array.isArray(fastifyError.validation)) {
    const errors = validationErrors(fastifyError.validationContext, fastifyError.validation);
    const first = errors[0];
    return new ProblemError('validation_failed', first ? `${first.path} ${first.message}` : 'The request is not valid.', { errors });
  }
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ProblemError('payload_too_large', 'The request body is larger than 64 KiB.');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ProblemError('unsupported_media_type', 'Send the request body as application/json.');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ProblemError('validation_failed', 'The request body is not valid JSON.', {
        errors: [{ path: '/body', message: 'is not valid JSON' }],
      });
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ProblemError('validation_failed', 'The Content-Length header does not match the body.');
    case 'FST_ERR_RATE_LIMITED':
      return new ProblemError('rate_limited', 'Too many requests.');
    default:
      break;
  }
  if (error instanceof SyntaxError) return new ProblemError('validation_failed', 'The request body is not valid JSON.');
  const status = typeof fastifyError.statusCode === 'number' ? fastifyError.statusCode : 500;
  if (status === 404) return new ProblemError('not_found', 'Not found.');
  // @fastify/static refuses a range past the end of a file; `content-range` tells the file's length.
  if (status === 416) {
    const contentRange = headerOf(error, 'content-range');
    return new ProblemError('validation_failed', 'The requested byte range is not satisfiable.', {
      status,
      ...(contentRange === undefined ? {} : { headers: { 'content-range': contentRange } }),
    });
  }
  if (status >= 400 && status < 500) return new ProblemError('validation_failed', 'The request is not valid.', { status });
  return new ProblemError('internal_error', 'Something went wrong on our side; try again later.', { cause: error });
}

/** An error as a complete problem response (a refusal stored under an Idempotency-Key and replayed as is). */
export function problemResponse(error: unknown, requestId: string): { status: number; headers: Record<string, string>; body: string } {
  const problem = toProblem(error);
  return {
    status: problem.status,
    headers: { 'content-type': `${problemContentType}; charset=utf-8` },
    body: JSON.stringify(buildProblem(problem, requestId)),
  };
}

export function errorHandler(this: unknown, error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const problem = toProblem(error);
  if (problem.status >= 500) request.log.error({ err: error }, 'request failed');
  else request.log.info({ code: problem.code, detail: problem.detail }, 'request refused');
  return sendProblem(reply, problem);
}
