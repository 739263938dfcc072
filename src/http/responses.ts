import type { TSchema } from '@sinclair/typebox';

import { RefTo } from '../../schemas/common.js';
import { Problem } from '../../schemas/problem.js';

interface HeaderDoc {
  type: 'string' | 'integer';
  description: string;
}

/** A documented JSON response (Fastify serializes by content type; @fastify/swagger documents headers). */
export const jsonResponse = (schema: TSchema, description: string, headers?: Record<string, HeaderDoc>) => ({
  description,
  ...(headers === undefined ? {} : { headers }),
  content: { 'application/json': { schema } },
});

const problemContent = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: RefTo(Problem) } },
});

/** Problem responses documented on routes, by status. */
export const problemResponses = {
  400: problemContent('Validation failed (`validation_failed`): see `errors`.'),
  401: problemContent('Missing or unknown API key (`unauthorized`).'),
  404: problemContent('No such video for this client (`not_found`).'),
  409: problemContent('Conflict (`idempotency_key_in_use`, `video_not_terminal`).'),
  413: problemContent('Body larger than 64 KiB (`payload_too_large`).'),
  415: problemContent('Body is not JSON (`unsupported_media_type`).'),
  422: problemContent('`upstream_rejected` (e.g. moderation) or `idempotency_key_reused`.'),
  429: problemContent('Rate limited (`rate_limited`); see `retry-after`.'),
  500: problemContent('Unexpected failure (`internal_error`).'),
  502: problemContent('Upstream failed (`upstream_unavailable`).'),
  503: problemContent(
    'Upstream unavailable or circuit open (`upstream_unavailable`), or the store cannot be written (`store_unavailable`); see `retry-after`.',
  ),
  504: problemContent('Upstream timed out (`upstream_timeout`).'),
} as const;

type ProblemStatus = keyof typeof problemResponses;

export function problemsFor<S extends ProblemStatus>(...statuses: S[]): Pick<typeof problemResponses, S> {
  const picked = {} as Pick<typeof problemResponses, S>;
  for (const status of statuses) picked[status] = problemResponses[status];
  return picked;
}

/** A fresh array per route, so the YAML document carries no anchors. */
export const bearerSecurity = (): Array<Record<string, string[]>> => [{ bearerAuth: [] }];
