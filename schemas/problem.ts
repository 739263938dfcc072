import { type Static, Type } from '@sinclair/typebox';

/** Stable snake_case problem codes (DESIGN §2.6). */
export const problemCodes = {
  validation_failed: 400,
  unauthorized: 401,
  not_found: 404,
  idempotency_key_in_use: 409,
  video_not_terminal: 409,
  request_timeout: 408,
  payload_too_large: 413,
  unsupported_media_type: 415,
  headers_too_large: 431,
  idempotency_key_reused: 422,
  upstream_rejected: 422,
  rate_limited: 429,
  internal_error: 500,
  upstream_unavailable: 503,
  /** The gateway's database cannot be reached or written right now; nothing was changed. Retry after `retry-after`. */
  store_unavailable: 503,
  upstream_timeout: 504,
} as const;

export type ProblemCode = keyof typeof problemCodes;

export const ProblemFieldError = Type.Object(
  {
    path: Type.String({ description: 'JSON pointer to the offending field, e.g. `/body/prompt`.' }),
    message: Type.String(),
  },
  { $id: 'ProblemFieldError', additionalProperties: false },
);

export const Problem = Type.Object(
  {
    type: Type.String({ description: 'URI reference naming the problem type.' }),
    title: Type.String(),
    status: Type.Integer({ minimum: 400, maximum: 599 }),
    detail: Type.String(),
    code: Type.Unsafe<ProblemCode>({
      type: 'string',
      enum: Object.keys(problemCodes),
      description: 'Stable snake_case code; switch on this, not on `title`.',
    }),
    requestId: Type.String(),
    errors: Type.Optional(Type.Array(ProblemFieldError)),
  },
  {
    $id: 'Problem',
    description: 'RFC 9457 problem details, served as `application/problem+json`.',
    examples: [
      {
        type: 'urn:problem:video-gateway:validation_failed',
        title: 'Validation failed',
        status: 400,
        detail: 'The request is not valid.',
        code: 'validation_failed',
        requestId: 'req_01JDXYZ8M6X1ZP3V9R4QK7T2HC',
        errors: [{ path: '/body/prompt', message: 'must NOT have fewer than 3 characters' }],
      },
    ],
  },
);
export type Problem = Static<typeof Problem>;
export type ProblemFieldError = Static<typeof ProblemFieldError>;
