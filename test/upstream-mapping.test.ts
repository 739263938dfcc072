import { readdirSync, readFileSync } from 'node:fs';

import t from 'tap';

import { parseRetryAfter as parseLenient } from '../src/lib/retry-after.js';
import {
  classifyUpstreamError,
  GENERIC_UPSTREAM_MESSAGE,
  isTaskNotExist,
  SAFE_MESSAGES,
  sanitizeUpstreamMessage,
} from '../src/upstream/failures.js';
import { mapUpstreamState, parseGeneration, toVideoResult } from '../src/upstream/generation.js';
import { DEFAULT_DOWNLOAD_URL_TTL_MS, downloadUrlExpiresAtMs, parseSigningDate } from '../src/upstream/signed-url.js';
import { UpstreamError } from '../src/upstream/types.js';

const fixturesDir = new URL('./fixtures/upstream/', import.meta.url);
const fixture = (name: string): unknown => JSON.parse(readFileSync(new URL(name, fixturesDir), 'utf8')) as unknown;

const FETCHED_AT = Date.parse('2024-10-15T09:31:00.000Z');
const iso = (ms: number): string => new Date(ms).toISOString();
const CDN = 'https://storage.cdn-luma.com/x';

t.test('every upstream fixture is covered by this file', async (t) => {
  const covered = [
    'create-201.json',
    'error-401.json',
    'error-429.json',
    'error-task-not-exist-400.json',
    'query-completed-signed.json',
    'query-completed.json',
    'query-failed.json',
    'query-running.json',
  ];
  const present = readdirSync(fixturesDir)
    .filter((name) => name.endsWith('.json'))
    .sort();
  t.same(present, covered.sort());
});

t.test('mapUpstreamState', async (t) => {
  const cases: Array<[unknown, string]> = [
    ['pending', 'queued'],
    ['queued', 'queued'],
    [' PENDING ', 'queued'],
    ['dreaming', 'processing'],
    ['Dreaming', 'processing'],
    ['processing', 'processing'],
    ['completed', 'completed'],
    ['COMPLETED\n', 'completed'],
    ['failed', 'failed'],
    ['upscaling', 'processing'],
    ['constructor', 'processing'],
    ['__proto__', 'processing'],
    ['', 'processing'],
    [undefined, 'processing'],
    [null, 'processing'],
    [42, 'processing'],
  ];
  for (const [state, expected] of cases) t.equal(mapUpstreamState(state), expected, `${JSON.stringify(state)} → ${expected}`);
});

t.test('create-201 (official shape, assets null)', async (t) => {
  const gen = parseGeneration(fixture('create-201.json'));
  t.same(gen, {
    upstreamId: '7ca76429-99d1-46ab-bb2e-84baa4acdb04',
    state: 'queued',
    status: 'queued',
    estimateWaitSeconds: null,
    failureReason: null,
    video: null,
    rawVideo: null,
    thumbnail: null,
    lastFrame: null,
    createdAt: '2024-11-27T13:50:56.313Z',
    settings: { model: null, resolution: null, duration: null },
  });
  t.equal(toVideoResult(gen, FETCHED_AT), null, 'no video url → no result');
});

t.test('the settings the upstream says it used: request echo, top-level model, known values only', async (t) => {
  const base = fixture('create-201.json') as Record<string, unknown>;
  const echo = (request: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    parseGeneration({ ...base, ...extra, request: { ...(base['request'] as object), ...request } }).settings;
  t.same(echo({ model: 'ray-2', resolution: '720p', duration: '5s' }), { model: 'ray-2', resolution: '720p', duration: '5s' });
  t.same(echo({}, { model: 'ray-flash-2' }), { model: 'ray-flash-2', resolution: null, duration: null });
  t.same(echo({ model: 'ray 2; drop', resolution: '8k', duration: 5 }), { model: null, resolution: null, duration: null });
});

t.test('query-running (web-app shape, assets null while dreaming)', async (t) => {
  const gen = parseGeneration(fixture('query-running.json'));
  t.equal(gen.state, 'dreaming');
  t.equal(gen.status, 'processing');
  t.equal(gen.estimateWaitSeconds, 42);
  t.equal(gen.video, null);
  t.equal(gen.thumbnail, null);
  t.equal(toVideoResult(gen, FETCHED_AT), null);
});

t.test('query-completed: every asset, zero created_at, no signature → fetchedAt + 3600 s', async (t) => {
  const gen = parseGeneration(fixture('query-completed.json'));
  t.equal(gen.status, 'completed');
  t.equal(gen.createdAt, null, 'the zero time 0001-01-01 is not trusted');
  t.equal(gen.video?.durationSeconds, 5.041667);
  t.equal(gen.video?.width, 1360);
  t.equal(gen.rawVideo?.durationSeconds, 5.041667);
  t.equal(gen.thumbnail?.url, 'https://imagedelivery.net/1KomXrSWiTojGGip43n0SQ/bbccab18-6661-4a63-adf1-069f838e9f00/public');
  t.equal(gen.lastFrame?.height, 752);

  const result = toVideoResult(gen, FETCHED_AT);
  t.ok(result);
  if (result === null) return;
  t.equal(result.video.downloadUrl, gen.video?.downloadUrl);
  t.equal(result.video.downloadUrlExpiresAt, iso(FETCHED_AT + 3600_000));
  t.equal(result.video.durationSeconds, 5.041667);
  t.same(result.rawVideo, { url: gen.rawVideo?.url, width: 1360, height: 752, durationSeconds: 5.041667 });
  t.same(result.thumbnail, { url: gen.thumbnail?.url, width: 1360, height: 752 }, 'palette and media_type dropped');
  t.same(result.lastFrame, { url: gen.lastFrame?.url, width: 1360, height: 752 });
});

t.test('query-completed-signed: expiry from X-Amz-Date + X-Amz-Expires', async (t) => {
  const gen = parseGeneration(fixture('query-completed-signed.json'));
  t.equal(gen.createdAt, '2024-10-15T09:28:11.000Z');
  t.equal(gen.video?.durationSeconds, null, 'no duration anywhere');
  const result = toVideoResult(gen, FETCHED_AT);
  t.ok(result);
  if (result === null) return;
  t.match(result.video.downloadUrl, /X-Amz-Signature=0123abcd$/);
  t.equal(result.video.downloadUrlExpiresAt, '2024-10-15T10:30:00.000Z');
  t.equal(result.video.durationSeconds, null);
  t.equal(result.rawVideo, null);
});

t.test('query-failed: failure_reason, no assets', async (t) => {
  const gen = parseGeneration(fixture('query-failed.json'));
  t.equal(gen.status, 'failed');
  t.equal(gen.failureReason, 'Advanced prompt moderation failed');
  t.equal(toVideoResult(gen, FETCHED_AT), null);
});

t.test('duration only on video_raw is used as the fallback', async (t) => {
  const gen = parseGeneration({
    id: 'a',
    state: 'completed',
    video: { url: `${CDN}/v.mp4`, width: 10, height: 20, download_url: `${CDN}/d.mp4` },
    video_raw: { url: `${CDN}/raw.mp4`, width: 10, height: 20, duration: 9.0 },
  });
  t.equal(gen.video?.durationSeconds, null, 'parsing keeps each asset as it is');
  t.equal(toVideoResult(gen, FETCHED_AT)?.video.durationSeconds, 9);
});

t.test('numbers given as strings, odd values dropped', async (t) => {
  const gen = parseGeneration({
    id: ' b ',
    state: 'completed',
    estimate_wait_seconds: '12',
    video: { url: `${CDN}/v.mp4`, width: '1360', height: '752.4', duration: '5.5' },
    thumbnail: { url: `${CDN}/t.jpg`, width: 'wide', height: -3 },
  });
  t.equal(gen.upstreamId, 'b', 'id trimmed');
  t.equal(gen.estimateWaitSeconds, 12);
  t.same(gen.video, { url: `${CDN}/v.mp4`, width: 1360, height: 752, durationSeconds: 5.5, downloadUrl: null });
  t.same(gen.thumbnail, { url: `${CDN}/t.jpg`, width: null, height: null });
  t.equal(parseGeneration({ id: 'c', estimate_wait_seconds: 'soon' }).estimateWaitSeconds, null);
  t.equal(parseGeneration({ id: 'c', estimate_wait_seconds: -1 }).estimateWaitSeconds, null);
});

t.test('download_url missing → null; the result falls back to the video url and fetchedAt + 3600 s', async (t) => {
  const gen = parseGeneration({ id: 'd', state: 'completed', video: { url: `${CDN}/v.mp4`, width: 1, height: 1 } });
  t.equal(gen.video?.downloadUrl, null);
  const result = toVideoResult(gen, FETCHED_AT);
  t.equal(result?.video.downloadUrl, `${CDN}/v.mp4`);
  t.equal(result?.video.downloadUrlExpiresAt, iso(FETCHED_AT + DEFAULT_DOWNLOAD_URL_TTL_MS));
  t.equal(result?.rawVideo, null);
  t.equal(result?.thumbnail, null);
  t.equal(result?.lastFrame, null);
});

t.test('official Luma assets as URL strings', async (t) => {
  const gen = parseGeneration({
    id: 'e',
    state: 'completed',
    failure_reason: null,
    assets: { video: `${CDN}/v.mp4`, image: `${CDN}/i.jpg`, progress_video: `${CDN}/p.mp4` },
  });
  t.same(gen.video, { url: `${CDN}/v.mp4`, width: null, height: null, durationSeconds: null, downloadUrl: null });
  t.same(gen.thumbnail, { url: `${CDN}/i.jpg`, width: null, height: null });
  t.equal(toVideoResult(gen, FETCHED_AT)?.video.url, `${CDN}/v.mp4`);
});

t.test('unknown or missing state means still running; the raw state is kept', async (t) => {
  const unknown = parseGeneration({ id: 'f', state: 'Upscaling' });
  t.equal(unknown.state, 'Upscaling');
  t.equal(unknown.status, 'processing');
  const missing = parseGeneration({ id: 'g' });
  t.equal(missing.state, '');
  t.equal(missing.status, 'processing');
  t.same([missing.video, missing.rawVideo, missing.thumbnail, missing.lastFrame, missing.createdAt], [null, null, null, null, null]);
});

t.test('failure_reason is sanitised before it can reach a client', async (t) => {
  t.equal(parseGeneration({ id: 'h', state: 'failed', failure_reason: '  too\n\nmany   spaces ' }).failureReason, 'too many spaces');
  t.equal(parseGeneration({ id: 'h', state: 'failed', failure_reason: '<html><body>oops</body></html>' }).failureReason, null);
  t.equal(parseGeneration({ id: 'h', state: 'failed', failure_reason: '' }).failureReason, null);
});

t.test('URLs that are not absolute http(s) are dropped', async (t) => {
  const gen = parseGeneration({
    id: 'i',
    video: { url: 'javascript:alert(1)', download_url: `${CDN}/d.mp4` },
    thumbnail: { url: '/relative.jpg' },
    last_frame: { url: `${CDN}/l.jpg`, width: 1, height: 1 },
    video_raw: { url: `${CDN}/raw.mp4` },
  });
  t.equal(gen.video, null);
  t.equal(gen.thumbnail, null);
  t.equal(gen.lastFrame?.url, `${CDN}/l.jpg`);
  t.same(gen.rawVideo, { url: `${CDN}/raw.mp4`, width: null, height: null, durationSeconds: null });
  t.equal(parseGeneration({ id: 'j', video: { url: `${CDN}/v.mp4`, download_url: 'ftp://x/y' } }).video?.downloadUrl, null);
});

t.test('parseGeneration refuses payloads without a usable string id', async (t) => {
  for (const payload of [null, undefined, 'text', 42, [], [{ id: 'a' }], {}, { id: '' }, { id: '  ' }, { id: 42 }, { state: 'queued' }]) {
    const label = JSON.stringify(payload) ?? 'undefined';
    const error = t.throws(() => parseGeneration(payload), label);
    t.ok(error instanceof UpstreamError, `${label}: an UpstreamError`);
    t.match(error, { kind: 'unavailable', safeMessage: 'The upstream answered with an unexpected payload' }, label);
  }
});

t.test('download URL expiry', async (t) => {
  const signed = (date: string, expires: string): string =>
    `${CDN}/v.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=${date}&X-Amz-Expires=${expires}&X-Amz-Signature=abc`;
  t.equal(iso(downloadUrlExpiresAtMs(signed('20241015T093000Z', '3600'), FETCHED_AT)), '2024-10-15T10:30:00.000Z');
  t.equal(iso(downloadUrlExpiresAtMs(signed('20241015T093000Z', '600'), FETCHED_AT)), '2024-10-15T09:40:00.000Z');
  const defaultExpiry = iso(FETCHED_AT + 3600_000);
  t.equal(iso(downloadUrlExpiresAtMs(signed('2024-10-15', '3600'), FETCHED_AT)), defaultExpiry, 'bad date');
  t.equal(iso(downloadUrlExpiresAtMs(signed('20241315T093000Z', '3600'), FETCHED_AT)), defaultExpiry, 'month 13');
  t.equal(iso(downloadUrlExpiresAtMs(signed('20241015T093000Z', 'soon'), FETCHED_AT)), defaultExpiry, 'bad expires');
  t.equal(iso(downloadUrlExpiresAtMs(signed('20241015T093000Z', '0'), FETCHED_AT)), defaultExpiry, 'zero expires');
  t.equal(iso(downloadUrlExpiresAtMs(`${CDN}/v.mp4?X-Amz-Date=20241015T093000Z`, FETCHED_AT)), defaultExpiry, 'no expires');
  t.equal(iso(downloadUrlExpiresAtMs(`${CDN}/v.mp4?X-Amz-Expires=3600`, FETCHED_AT)), defaultExpiry, 'no date');
  t.equal(
    iso(downloadUrlExpiresAtMs(`${CDN}/v.mp4?x-amz-date=20241015T093000Z&x-amz-expires=1800`, FETCHED_AT)),
    '2024-10-15T10:00:00.000Z',
    'parameter names are matched ignoring case',
  );
  t.equal(
    iso(downloadUrlExpiresAtMs(`${CDN}/v.mp4?X-Goog-Date=20241015T093000Z&X-Goog-Expires=900`, FETCHED_AT)),
    '2024-10-15T09:45:00.000Z',
    'GCS V4 signatures too',
  );
  t.equal(
    iso(downloadUrlExpiresAtMs(signed('20241015T120000Z', '3600'), FETCHED_AT)),
    iso(FETCHED_AT + 3600_000),
    'a future-dated signature never promises more than fetchedAt + X-Amz-Expires',
  );
  t.equal(parseSigningDate('20241015T093000Z'), Date.parse('2024-10-15T09:30:00Z'));
  t.equal(parseSigningDate('20240230T093000Z'), null, '30 February');
  t.equal(parseSigningDate('20241015T093060Z'), null, 'second 60');
});

t.test('sanitizeUpstreamMessage', async (t) => {
  t.equal(sanitizeUpstreamMessage(fixture('error-401.json')), 'Invalid token', 'request id suffix stripped');
  t.equal(sanitizeUpstreamMessage(fixture('error-429.json')), 'The current model traffic limit has been reached, please try again later');
  t.equal(sanitizeUpstreamMessage(fixture('error-task-not-exist-400.json')), 'task_not_exist');
  t.equal(sanitizeUpstreamMessage({ detail: 'Prompt is too short' }), 'Prompt is too short', 'Luma detail');
  t.equal(
    sanitizeUpstreamMessage({ detail: [{ loc: ['body', 'prompt'], msg: 'field required', type: 'value_error' }, { msg: 'bad ratio' }] }),
    'field required; bad ratio',
    'FastAPI validation list',
  );
  t.equal(sanitizeUpstreamMessage({ message: 'plain relay message' }), 'plain relay message');
  t.equal(sanitizeUpstreamMessage({ error: 'error as a string' }), 'error as a string');
  t.equal(sanitizeUpstreamMessage('just text'), 'just text');
  t.equal(sanitizeUpstreamMessage('{"error":{"message":"json inside a string"}}'), 'json inside a string');

  const html = '<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>502</h1></body></html>';
  t.equal(sanitizeUpstreamMessage(html), GENERIC_UPSTREAM_MESSAGE, 'HTML page → generic');
  t.equal(sanitizeUpstreamMessage({ error: { message: 'see <a href="x">here</a>' } }), GENERIC_UPSTREAM_MESSAGE);
  t.equal(sanitizeUpstreamMessage('value must be < 5 and > 3'), 'value must be < 5 and > 3', 'comparisons are not HTML');

  t.equal(sanitizeUpstreamMessage('Quota exceeded (request id: 2026112900000000abc) '), 'Quota exceeded');
  t.equal(sanitizeUpstreamMessage('Quota exceeded [Request-ID: abc-123]'), 'Quota exceeded');
  t.equal(sanitizeUpstreamMessage('Quota exceeded. request_id=abc-123'), 'Quota exceeded.');

  const withBearer = sanitizeUpstreamMessage('header was Authorization: Bearer abc.def-ghi_123 thanks');
  t.notMatch(withBearer, /abc\.def-ghi_123/);
  t.match(withBearer, /Bearer \[redacted\]/);
  const withSk = sanitizeUpstreamMessage({ error: { message: 'Incorrect API key provided: sk-AbCdEf1234567890XYZ.' } });
  t.notMatch(withSk, /AbCdEf1234567890XYZ/);
  t.match(withSk, /^Incorrect API key provided: \[redacted\]/);
  t.notMatch(sanitizeUpstreamMessage('bad api_key=0123456789abcdef in query'), /0123456789abcdef/);
  t.notMatch(sanitizeUpstreamMessage('token: Zm9vYmFyYmF6cXV4 expired'), /Zm9vYmFyYmF6cXV4/);
  t.notMatch(sanitizeUpstreamMessage(`key ${'a1'.repeat(24)} refused`), /a1a1a1/, 'long opaque tokens');
  t.equal(sanitizeUpstreamMessage('Invalid key: please check it'), 'Invalid key: please check it', 'plain words survive');

  t.equal(sanitizeUpstreamMessage('  many\n\tlines \r\n  here\u0000 '), 'many lines here');
  // C1 controls too: U+009B is a terminal's CSI, as able to rewrite a log viewer's screen as ESC [.
  t.equal(sanitizeUpstreamMessage('bad\u009b2Jrequest\u0085end'), 'bad 2Jrequest end', 'C1 control characters');
  const long = sanitizeUpstreamMessage('word '.repeat(200));
  t.ok(long.length <= 300, `capped at 300 (${long.length})`);
  t.ok(long.endsWith('…'));

  for (const nothing of [null, undefined, 42, {}, { error: {} }, '   ', []]) {
    t.equal(sanitizeUpstreamMessage(nothing), GENERIC_UPSTREAM_MESSAGE, JSON.stringify(nothing) ?? 'undefined');
  }
});

t.test('parseRetryAfter, lenient as for upstream relays', async (t) => {
  const parseRetryAfter = (value: string | string[] | null | undefined, at: number) => parseLenient(value, at, { lenient: true });
  const now = Date.parse('2026-01-01T00:00:00.000Z');
  t.equal(parseRetryAfter('2', now), 2000);
  t.equal(parseRetryAfter(' 0 ', now), 0);
  t.equal(parseRetryAfter('1.5', now), 1500);
  t.equal(parseRetryAfter(['7', '9'], now), 7000, 'first value of a repeated header');
  t.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:10 GMT', now), 10_000, 'IMF-fixdate');
  t.equal(parseRetryAfter('Thursday, 01-Jan-26 00:00:30 GMT', now), 30_000, 'RFC 850 date');
  t.equal(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now), 0, 'a date in the past means now');
  for (const bad of ['soon', '-1', '', '2026-01-01', 'Foo, bar', undefined, null]) {
    t.equal(parseRetryAfter(bad, now), null, JSON.stringify(bad) ?? 'undefined');
  }
});

t.test('classifyUpstreamError', async (t) => {
  const now = Date.parse('2026-01-01T00:00:00.000Z');

  const notFound = classifyUpstreamError(400, fixture('error-task-not-exist-400.json'), {}, now);
  t.equal(notFound.kind, 'not_found');
  t.equal(notFound.httpStatus, 400);
  t.equal(notFound.safeMessage, SAFE_MESSAGES.notFound);
  t.equal(classifyUpstreamError(400, { error: { code: 'task_not_exist', message: 'x' } }, {}, now).kind, 'not_found');
  t.equal(classifyUpstreamError(404, { code: 'task_not_exist' }, {}, now).kind, 'not_found');

  const rejected = classifyUpstreamError(400, { error: { message: 'Prompt rejected by moderation (request id: 1)' } }, {}, now);
  t.equal(rejected.kind, 'rejected');
  t.equal(rejected.safeMessage, 'Prompt rejected by moderation');
  t.equal(classifyUpstreamError(400, undefined, {}, now).safeMessage, SAFE_MESSAGES.rejected, 'no usable message');
  const unprocessable = classifyUpstreamError(422, { detail: [{ msg: 'prompt too long' }] }, {}, now);
  t.equal(unprocessable.kind, 'rejected');
  t.equal(unprocessable.httpStatus, 422);
  t.equal(unprocessable.safeMessage, 'prompt too long');

  for (const status of [401, 403]) {
    const auth = classifyUpstreamError(status, fixture('error-401.json'), {}, now);
    t.equal(auth.kind, 'auth', `${status} → auth`);
    t.equal(auth.safeMessage, 'The gateway could not authenticate with the upstream');
    t.notMatch(auth.safeMessage, /token|your|invalid/i, 'never blames the client');
  }

  const limited = classifyUpstreamError(429, fixture('error-429.json'), { 'retry-after': '3' }, now);
  t.equal(limited.kind, 'rate_limited');
  t.equal(limited.retryAfterMs, 3000);
  const limitedByDate = classifyUpstreamError(429, undefined, { 'Retry-After': 'Thu, 01 Jan 2026 00:01:00 GMT' }, now);
  t.equal(limitedByDate.retryAfterMs, 60_000, 'HTTP-date, header name in any case');
  t.equal(classifyUpstreamError(429, undefined, {}, now).retryAfterMs, null);

  for (const status of [500, 502, 503, 504, 524, 404, 408, 409, 302, 418]) {
    const error = classifyUpstreamError(status, { error: { message: 'internal detail that stays internal' } }, {}, now);
    t.equal(error.kind, 'unavailable', `${status} → unavailable`);
    t.equal(error.httpStatus, status);
    t.equal(error.safeMessage, SAFE_MESSAGES.unavailable);
  }
  t.equal(classifyUpstreamError(503, undefined, { 'retry-after': '5' }, now).retryAfterMs, 5000, 'Retry-After kept on 503');
});

t.test('isTaskNotExist', async (t) => {
  t.ok(isTaskNotExist(fixture('error-task-not-exist-400.json')));
  t.ok(isTaskNotExist({ error: { code: 'TASK_NOT_EXIST' } }));
  t.notOk(isTaskNotExist({ code: 'other' }));
  t.notOk(isTaskNotExist('task_not_exist'));
  t.notOk(isTaskNotExist(null));
});
