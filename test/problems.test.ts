import t from 'tap';

import type { ProblemCode } from '../schemas/problem.js';
import { DomainError, type DomainErrorCode, StoreUnavailable, ValidationFailed, VideoNotFound } from '../src/errors.js';
import { buildProblem, ProblemError, toProblem } from '../src/http/problems.js';
import { UpstreamError, type UpstreamErrorKind } from '../src/upstream/types.js';

/** What a client sees of a mapped error: the parts it can switch on. */
const seen = (error: unknown) => {
  const problem = toProblem(error);
  return { status: problem.status, code: problem.code, headers: problem.options.headers ?? {} };
};

t.test('every domain code maps to its documented status, without headers unless it carries a retry hint', async (t) => {
  const statuses: Record<DomainErrorCode, number> = {
    validation_failed: 400,
    not_found: 404,
    idempotency_key_in_use: 409,
    video_not_terminal: 409,
    idempotency_key_reused: 422,
    store_unavailable: 503,
  };
  for (const [code, status] of Object.entries(statuses) as Array<[DomainErrorCode, number]>) {
    t.same(seen(new DomainError(code, 'Safe words.')), { status, code, headers: {} }, code);
  }
  t.same(seen(new VideoNotFound()), { status: 404, code: 'not_found', headers: {} }, 'VideoNotFound');
  const storeDown = toProblem(new StoreUnavailable(new Error('connect ECONNREFUSED 10.0.0.7:5432 password=hunter2')));
  t.same(
    { status: storeDown.status, code: storeDown.code, headers: storeDown.options.headers },
    { status: 503, code: 'store_unavailable', headers: { 'retry-after': '5' } },
    'StoreUnavailable: 503 with retry-after',
  );
  t.notMatch(JSON.stringify(buildProblem(storeDown, 'req_1')), /ECONNREFUSED|hunter2|10\.0\.0\.7/, 'the cause never reaches the body');
});

t.test('StoreUnavailable is a 503 with retry-after whose body never carries the driver error', async (t) => {
  const problem = toProblem(new StoreUnavailable(new Error('SQLITE_READONLY: attempt to write /var/lib/secret-path.db')));
  t.same(
    { status: problem.status, code: problem.code, headers: problem.options.headers },
    {
      status: 503,
      code: 'store_unavailable',
      headers: { 'retry-after': '5' },
    },
  );
  t.notMatch(JSON.stringify(buildProblem(problem, 'req_1')), /SQLITE|secret-path/);
});

t.test('a domain error keeps its detail and field errors, and its retry hint becomes whole retry-after seconds', async (t) => {
  const invalid = toProblem(
    new ValidationFailed('keyframes.frame0.videoId is not yours.', [
      { path: '/body/keyframes/frame0/videoId', message: 'is not one of your completed videos' },
    ]),
  );
  t.same(buildProblem(invalid, 'req_1'), {
    type: 'urn:problem:video-gateway:validation_failed',
    title: 'Validation failed',
    status: 400,
    detail: 'keyframes.frame0.videoId is not yours.',
    code: 'validation_failed',
    requestId: 'req_1',
    errors: [{ path: '/body/keyframes/frame0/videoId', message: 'is not one of your completed videos' }],
  });
  t.same(seen(new DomainError('idempotency_key_in_use', 'Still running.', { retryAfterSeconds: 1 })).headers, { 'retry-after': '1' });
  t.same(
    seen(new DomainError('idempotency_key_in_use', 'Still running.', { retryAfterSeconds: 2.2 })).headers,
    { 'retry-after': '3' },
    'rounded up',
  );
  t.same(
    seen(new DomainError('idempotency_key_in_use', 'Still running.', { retryAfterSeconds: 0 })).headers,
    { 'retry-after': '1' },
    'at least 1',
  );
});

t.test('every upstream kind maps to what DESIGN §2.6 promises the client', async (t) => {
  const expected: Record<
    UpstreamErrorKind,
    { status: number; code: ProblemCode; withRetryAfter: Record<string, string>; without: Record<string, string> }
  > = {
    rejected: { status: 422, code: 'upstream_rejected', withRetryAfter: {}, without: {} },
    timeout: { status: 504, code: 'upstream_timeout', withRetryAfter: {}, without: {} },
    rate_limited: { status: 503, code: 'upstream_unavailable', withRetryAfter: { 'retry-after': '3' }, without: { 'retry-after': '5' } },
    circuit_open: { status: 503, code: 'upstream_unavailable', withRetryAfter: { 'retry-after': '3' }, without: { 'retry-after': '5' } },
    auth: { status: 503, code: 'upstream_unavailable', withRetryAfter: {}, without: {} },
    not_found: { status: 502, code: 'upstream_unavailable', withRetryAfter: { 'retry-after': '3' }, without: {} },
    unavailable: { status: 502, code: 'upstream_unavailable', withRetryAfter: { 'retry-after': '3' }, without: {} },
  };
  for (const [kind, { status, code, withRetryAfter, without }] of Object.entries(expected) as Array<
    [UpstreamErrorKind, (typeof expected)[UpstreamErrorKind]]
  >) {
    t.same(seen(new UpstreamError(kind, 'safe', 500, 2_500)), { status, code, headers: withRetryAfter }, `${kind} with Retry-After 2.5 s`);
    t.same(seen(new UpstreamError(kind, 'safe', 500, null)), { status, code, headers: without }, `${kind} without`);
  }
  t.equal(
    toProblem(new UpstreamError('rejected', 'Prompt refused by moderation', 400)).detail,
    'Prompt refused by moderation',
    'a refusal passes on its safe message',
  );
  t.notMatch(
    toProblem(new UpstreamError('auth', 'The gateway could not authenticate with the upstream', 401)).detail,
    /authenticat|key/i,
    'our key trouble is not the client’s',
  );
});

t.test('the HTTP layer’s own problems pass as they are; anything else is a 500 that says nothing about internals', async (t) => {
  const own = new ProblemError('unauthorized', 'Send a valid API key.', { headers: { 'www-authenticate': 'Bearer realm="videos"' } });
  t.equal(toProblem(own), own);
  const crash = toProblem(new Error('SQLITE_CORRUPT at /var/lib/gateway.db'));
  t.same({ status: crash.status, code: crash.code }, { status: 500, code: 'internal_error' });
  t.notMatch(crash.detail, /SQLITE|gateway\.db/);
});
