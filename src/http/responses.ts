import type { TSchema } from '@sinclair/typebox';

import { RefTo } from '../../schemas/common.js';
import { Problem, type ProblemCode, problemCodes } from '../../schemas/problem.js';
import { problemTitles } from './problems.js';

interface HeaderDoc {
  type: 'string' | 'integer';
  description: string;
}
type HeaderDocs = Record<string, HeaderDoc>;

/** Sent on every response (DESIGN §2). */
export const requestIdHeader: HeaderDocs = {
  'x-request-id': {
    type: 'string',
    description: 'The request id (yours when you sent a valid `x-request-id`); quote it in support requests.',
  },
};

/** Sent on every answer of an authenticated route, for the tighter of the limits that apply (DESIGN §2.5). */
export const rateLimitHeaders: HeaderDocs = {
  'x-ratelimit-limit': { type: 'integer', description: 'Requests allowed per window by the tightest limit that applies.' },
  'x-ratelimit-remaining': { type: 'integer', description: 'Requests left in the current window.' },
  'x-ratelimit-reset': { type: 'integer', description: 'Seconds until the window resets.' },
};

const retryAfterHeader: HeaderDocs = {
  'retry-after': { type: 'integer', description: 'Seconds to wait before trying again.' },
};

/** A documented JSON response (Fastify serializes by content type; @fastify/swagger documents headers). */
export const jsonResponse = (schema: TSchema, description: string, headers: HeaderDocs = {}) => ({
  description,
  headers: { ...requestIdHeader, ...headers },
  content: { 'application/json': { schema } },
});

const exampleRequestId = 'req_01JDXYZ8M6X1ZP3V9R4QK7T2HC';

interface ProblemDoc {
  description: string;
  detail: string;
  errors?: Problem['errors'];
  headers?: HeaderDocs;
}

/** What each problem code means on a route, with a realistic example body (Swagger UI shows it per status). */
const problemDocs: Record<ProblemCode, ProblemDoc> = {
  validation_failed: {
    description: 'Validation failed (`validation_failed`): see `errors`.',
    detail: '/body/prompt must NOT have fewer than 3 characters',
    errors: [{ path: '/body/prompt', message: 'must NOT have fewer than 3 characters' }],
  },
  unauthorized: {
    description: 'Missing, unknown or expired credential (`unauthorized`).',
    detail: 'Send your API key as "Authorization: Bearer <key>".',
  },
  forbidden: {
    description: 'A route for app servers called with an end-user token (`forbidden`).',
    detail: 'This route is for app servers: call it with the client API key, not an end-user token.',
  },
  not_found: {
    description: 'No such video for this caller (`not_found`).',
    detail: 'No video vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC.',
  },
  method_not_allowed: {
    description: 'The path exists but not with this method (`method_not_allowed`); see `allow`.',
    detail: 'PUT is not allowed on /videos; use GET, HEAD or POST.',
    headers: { allow: { type: 'string', description: 'The methods this path serves.' } },
  },
  idempotency_key_in_use: {
    description: 'A request with this `Idempotency-Key` is still running (`idempotency_key_in_use`); retry shortly.',
    detail: 'A request with this Idempotency-Key is still in progress; retry after it completes.',
  },
  video_not_terminal: {
    description: 'The video is still running (`video_not_terminal`): there is no terminal event to send yet.',
    detail: 'The video is still processing; redeliver once it is completed or failed.',
  },
  request_timeout: {
    description: 'The request did not arrive in full within `REQUEST_TIMEOUT_MS` (`request_timeout`); the connection is closed.',
    detail: 'The request was not received in time.',
  },
  payload_too_large: {
    description: 'Body larger than 64 KiB (`payload_too_large`).',
    detail: 'The request body is larger than 64 KiB.',
  },
  unsupported_media_type: {
    description: 'Body is not JSON, or is compressed (`unsupported_media_type`); see `accept-encoding` when present.',
    detail: 'Send the request body as application/json.',
  },
  headers_too_large: {
    description: 'The request headers are larger than the server accepts (`headers_too_large`).',
    detail: 'The request headers are too large.',
  },
  idempotency_key_reused: {
    description: '`upstream_rejected` (e.g. moderation; the upstream message, sanitised) or `idempotency_key_reused`.',
    detail: 'This Idempotency-Key was used with a different request body.',
  },
  upstream_rejected: {
    description: '`upstream_rejected` (e.g. moderation; the upstream message, sanitised) or `idempotency_key_reused`.',
    detail: 'The prompt was rejected by content moderation.',
  },
  rate_limited: {
    description: 'Rate limited (`rate_limited`); see `retry-after`.',
    detail: 'Too many requests.',
    headers: { ...retryAfterHeader, ...rateLimitHeaders },
  },
  internal_error: {
    description: 'Unexpected failure (`internal_error`).',
    detail: 'Something went wrong on our side; try again later.',
  },
  upstream_unavailable: {
    description: 'The upstream failed or is refusing work (`upstream_unavailable`); see `retry-after` when present.',
    detail: 'The video service is temporarily unavailable; try again later.',
    headers: retryAfterHeader,
  },
  upstream_timeout: {
    description: 'The upstream did not answer in time (`upstream_timeout`).',
    detail: 'The video service did not answer in time; try again later.',
  },
  store_unavailable: {
    description:
      "The gateway's database cannot be written right now (`store_unavailable`): nothing was changed and nothing was bought upstream; see `retry-after`.",
    detail: 'The gateway cannot reach its database right now; nothing was changed. Retry shortly.',
    headers: retryAfterHeader,
  },
};

/** The example body of a problem, as the gateway sends it. */
export function exampleProblem(code: ProblemCode, status: number = problemCodes[code]): Problem {
  const doc = problemDocs[code];
  return {
    type: `urn:problem:video-gateway:${code}`,
    title: problemTitles[code],
    status,
    detail: doc.detail,
    code,
    requestId: exampleRequestId,
    ...(doc.errors === undefined ? {} : { errors: doc.errors }),
  };
}

/**
 * One documented problem response: the codes a route can answer with at this status (the first gives the
 * example), their headers and a description. Use it where a status means less on a route than in `problemsFor`.
 */
export function problemResponse(codes: readonly [ProblemCode, ...ProblemCode[]], options: { status?: number; description?: string } = {}) {
  const [first] = codes;
  const status = options.status ?? problemCodes[first];
  const headers: HeaderDocs = { ...requestIdHeader };
  for (const code of codes) Object.assign(headers, problemDocs[code].headers);
  return {
    description: options.description ?? codes.map((code) => problemDocs[code].description).join(' Or: '),
    headers,
    content: { 'application/problem+json': { schema: RefTo(Problem), example: exampleProblem(first, status) } },
  };
}

const defaultCodes = {
  400: ['validation_failed'],
  401: ['unauthorized'],
  403: ['forbidden'],
  404: ['not_found'],
  409: ['idempotency_key_in_use'],
  413: ['payload_too_large'],
  415: ['unsupported_media_type'],
  422: ['upstream_rejected', 'idempotency_key_reused'],
  429: ['rate_limited'],
  500: ['internal_error'],
  502: ['upstream_unavailable'],
  503: ['upstream_unavailable', 'store_unavailable'],
  504: ['upstream_timeout'],
} as const satisfies Record<number, readonly [ProblemCode, ...ProblemCode[]]>;

type ProblemStatus = keyof typeof defaultCodes;

/** Problem responses documented on a route, by status, with the codes each status usually carries. */
export function problemsFor<S extends ProblemStatus>(...statuses: S[]): Record<S, ReturnType<typeof problemResponse>> {
  const picked = {} as Record<S, ReturnType<typeof problemResponse>>;
  for (const status of statuses) {
    picked[status] = problemResponse(defaultCodes[status], {
      status,
      ...(status === 502 ? { description: 'The upstream failed (5xx, network) (`upstream_unavailable`).' } : {}),
    });
  }
  return picked;
}

/** App servers only (the client API key). A fresh array per route, so the YAML document carries no anchors. */
export const bearerSecurity = (): Array<Record<string, string[]>> => [{ bearerAuth: [] }];

/** Routes open without a credential (health, metrics) say so explicitly: `security: []`. */
export const noSecurity = (): Array<Record<string, string[]>> => [];

/** Either credential: the client API key (every video of the client) or an end-user JWT (only its own videos). */
export const callerSecurity = (): Array<Record<string, string[]>> => [{ bearerAuth: [] }, { endUserAuth: [] }];
