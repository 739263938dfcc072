import { ProblemError } from '../http/problems.js';
import type { UpstreamError } from '../upstream/types.js';

const unavailable = 'The video service is temporarily unavailable; try again later.';

/** How an upstream failure during a client request reads to that client (DESIGN §2.6). Pure. */
export function problemFromUpstream(error: UpstreamError): ProblemError {
  const retryAfter =
    error.retryAfterMs !== null ? { 'retry-after': String(Math.max(1, Math.ceil(error.retryAfterMs / 1000))) } : undefined;
  switch (error.kind) {
    case 'rejected':
      return new ProblemError('upstream_rejected', error.safeMessage, { cause: error });
    case 'timeout':
      return new ProblemError('upstream_timeout', 'The video service did not answer in time; try again later.', { cause: error });
    case 'rate_limited':
    // Our breaker is open after repeated upstream outages: its retry-after says when it probes again.
    case 'circuit_open':
      return new ProblemError('upstream_unavailable', unavailable, { status: 503, headers: retryAfter ?? { 'retry-after': '5' }, cause: error });
    case 'auth':
      // Our own key was refused: never a 401 to the client, whose key is fine.
      return new ProblemError('upstream_unavailable', unavailable, { status: 503, cause: error });
    case 'not_found':
    case 'unavailable':
      return new ProblemError('upstream_unavailable', unavailable, { status: 502, ...(retryAfter ? { headers: retryAfter } : {}), cause: error });
  }
}
