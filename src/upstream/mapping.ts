/**
 * Pure mapping between ElkAPI's payloads and the gateway's types. No I/O, no clock: callers pass times in.
 *
 * The upstream speaks two shapes (see shared/upstream/ELKAPI.md): the official Luma shape on create
 * (`assets` null or `{ video, image }` URL strings) and the Luma web-app shape on query (`video`, `video_raw`,
 * `thumbnail`, `last_frame` objects). Relays drift, so parsing is liberal: anything unusable becomes null
 * rather than an error, except a missing task id, without which nothing can be tracked.
 */
import type { VideoResult, VideoStatus } from '../../schemas/video.js';
import {
  UpstreamError,
  type UpstreamAsset,
  type UpstreamGeneration,
  type UpstreamHeaders,
  type UpstreamVideoAsset,
} from './types.js';
import { parseRetryAfter } from '../lib/retry-after.js';

type JsonObject = Record<string, unknown>;

const isObject = (value: unknown): value is JsonObject =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

// ---------------------------------------------------------------------------------------------------------
// State

// A Map, not an object literal: `constructor` or `__proto__` as a state must not hit Object.prototype.
const statusByUpstreamState = new Map<string, VideoStatus>([
  ['pending', 'queued'],
  ['queued', 'queued'],
  ['dreaming', 'processing'],
  ['processing', 'processing'],
  ['completed', 'completed'],
  ['failed', 'failed'],
]);

/** DESIGN §2.2: anything never seen before means "still running". */
export function mapUpstreamState(state: unknown): VideoStatus {
  if (typeof state !== 'string') return 'processing';
  return statusByUpstreamState.get(state.trim().toLowerCase()) ?? 'processing';
}

// ---------------------------------------------------------------------------------------------------------
// Scalars

/** A finite number, also when the relay sent it as a string (`"5.04"`). */
function toFiniteNumber(value: unknown): number | null {
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value !== 'string' || value.trim() === '') return null;
  const parsed = Number(value.trim());
  return Number.isFinite(parsed) ? parsed : null;
}

function toNonNegativeNumber(value: unknown): number | null {
  const parsed = toFiniteNumber(value);
  return parsed !== null && parsed >= 0 ? parsed : null;
}

function toPositiveNumber(value: unknown): number | null {
  const parsed = toFiniteNumber(value);
  return parsed !== null && parsed > 0 ? parsed : null;
}

/** Pixel sizes are integers in our schema. */
function toDimension(value: unknown): number | null {
  const parsed = toPositiveNumber(value);
  return parsed === null ? null : Math.round(parsed);
}

/** Only absolute http(s) URLs reach clients: a relay must not be able to hand a phone a `javascript:` link. */
function toHttpUrl(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const candidate = value.trim();
  try {
    const { protocol } = new URL(candidate);
    return protocol === 'https:' || protocol === 'http:' ? candidate : null;
  } catch {
    return null;
  }
}

// Anything before 2000 is the zero time (`0001-01-01T00:00:00Z`) or garbage, not a real creation date.
const EARLIEST_CREDIBLE_DATE_MS = Date.UTC(2000, 0, 1);

function toCredibleIso(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const ms = Date.parse(value);
  return Number.isFinite(ms) && ms >= EARLIEST_CREDIBLE_DATE_MS ? new Date(ms).toISOString() : null;
}

// ---------------------------------------------------------------------------------------------------------
// Generation

/** The error for a 2xx answer the gateway cannot use (not JSON, not an object, no task id). */
export function unexpectedPayload(httpStatus: number | null = null): UpstreamError {
  return new UpstreamError('unavailable', 'The upstream answered with an unexpected payload', httpStatus);
}

/** An asset is either an object `{ url, width, height }` (web-app shape) or a bare URL (official `assets`). */
function parseAsset(value: unknown): UpstreamAsset | null {
  if (typeof value === 'string') {
    const url = toHttpUrl(value);
    return url === null ? null : { url, width: null, height: null };
  }
  if (!isObject(value)) return null;
  const url = toHttpUrl(value.url);
  if (url === null) return null;
  return { url, width: toDimension(value.width), height: toDimension(value.height) };
}

function parseVideoAsset(value: unknown): UpstreamVideoAsset | null {
  const asset = parseAsset(value);
  if (asset === null) return null;
  const durationSeconds = isObject(value) ? toPositiveNumber(value.duration) : null;
  return { ...asset, durationSeconds };
}

function parseMainVideo(value: unknown): UpstreamGeneration['video'] {
  const asset = parseVideoAsset(value);
  if (asset === null) return null;
  const downloadUrl = isObject(value) ? toHttpUrl(value.download_url) : null;
  return { ...asset, downloadUrl };
}

/**
 * Normalises an upstream generation from either payload shape.
 * Throws `UpstreamError('unavailable')` when the payload is not an object with a usable string `id`.
 */
export function parseGeneration(json: unknown): UpstreamGeneration {
  if (!isObject(json)) throw unexpectedPayload();
  const upstreamId = typeof json.id === 'string' ? json.id.trim() : '';
  if (upstreamId === '') throw unexpectedPayload();

  // Official Luma shape: `assets: { video: url, image: url }`, or null while running.
  const assets: JsonObject = isObject(json.assets) ? json.assets : {};
  const state = typeof json.state === 'string' ? json.state.trim() : '';

  return {
    upstreamId,
    state,
    status: mapUpstreamState(json.state),
    estimateWaitSeconds: toNonNegativeNumber(json.estimate_wait_seconds),
    // It reaches clients as the failure message, so it gets the same treatment as error messages.
    failureReason: extractSafeMessage(json.failure_reason),
    video: parseMainVideo(json.video) ?? parseMainVideo(assets.video),
    rawVideo: parseVideoAsset(json.video_raw) ?? parseVideoAsset(assets.video_raw),
    thumbnail: parseAsset(json.thumbnail) ?? parseAsset(assets.image) ?? parseAsset(assets.thumbnail),
    lastFrame: parseAsset(json.last_frame) ?? parseAsset(assets.last_frame),
    createdAt: toCredibleIso(json.created_at),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Result

/** ElkAPI documents a 3600 s lifetime for `download_url`; used when the URL carries no signature window. */
export const DEFAULT_DOWNLOAD_URL_TTL_MS = 3600 * 1000;
// S3 / GCS presigned URLs live at most 7 days; a larger value is not a real signature window.
const MAX_SIGNED_URL_TTL_SECONDS = 7 * 24 * 3600;

/** `20241015T093000Z` (SigV4 / GCS V4 date) → epoch ms, or null. */
export function parseSigningDate(value: string): number | null {
  const text = value.trim();
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (match === null) return null;
  const [year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0] = match.slice(1).map(Number);
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  // Date.UTC rolls 2024-13-45 over into a valid date; accept only what round-trips unchanged.
  const roundTrip = `${new Date(ms).toISOString().slice(0, 19).replace(/[-:]/g, '')}Z`;
  return roundTrip === text ? ms : null;
}

function queryParamIgnoringCase(url: URL, name: string): string | null {
  const wanted = name.toLowerCase();
  for (const [key, value] of url.searchParams) {
    if (key.toLowerCase() === wanted) return value;
  }
  return null;
}

/** The signature window of a presigned S3 (`X-Amz-*`) or GCS (`X-Goog-*`) URL, when it has a valid one. */
function signedUrlWindow(downloadUrl: string): { signedAtMs: number; ttlMs: number } | null {
  let url: URL;
  try {
    url = new URL(downloadUrl);
  } catch {
    return null;
  }
  for (const vendor of ['Amz', 'Goog']) {
    const date = queryParamIgnoringCase(url, `X-${vendor}-Date`);
    const expires = queryParamIgnoringCase(url, `X-${vendor}-Expires`);
    if (date === null || expires === null || !/^\d+$/.test(expires.trim())) continue;
    const signedAtMs = parseSigningDate(date);
    const ttlSeconds = Number(expires.trim());
    if (signedAtMs === null || ttlSeconds <= 0 || ttlSeconds > MAX_SIGNED_URL_TTL_SECONDS) continue;
    return { signedAtMs, ttlMs: ttlSeconds * 1000 };
  }
  return null;
}

/** When a download URL stops working, as epoch ms. */
export function downloadUrlExpiresAtMs(downloadUrl: string, fetchedAtMs: number): number {
  const window = signedUrlWindow(downloadUrl);
  if (window === null) return fetchedAtMs + DEFAULT_DOWNLOAD_URL_TTL_MS;
  // Never later than a signature made at fetch time would allow: a future-dated X-Amz-Date (clock skew
  // upstream) must not make us promise a lifetime the URL cannot have.
  return Math.min(window.signedAtMs + window.ttlMs, fetchedAtMs + window.ttlMs);
}

const stripDuration = (asset: UpstreamVideoAsset): UpstreamAsset => ({
  url: asset.url,
  width: asset.width,
  height: asset.height,
});

/** The client-facing result of a generation; null while there is no video URL yet. */
export function toVideoResult(gen: UpstreamGeneration, fetchedAtMs: number): VideoResult | null {
  const { video } = gen;
  if (video === null) return null;
  const downloadUrl = video.downloadUrl ?? video.url;
  return {
    video: {
      url: video.url,
      downloadUrl,
      downloadUrlExpiresAt: new Date(downloadUrlExpiresAtMs(downloadUrl, fetchedAtMs)).toISOString(),
      width: video.width,
      height: video.height,
      // Some accounts only report the duration on `video_raw`.
      durationSeconds: video.durationSeconds ?? gen.rawVideo?.durationSeconds ?? null,
    },
    rawVideo: gen.rawVideo === null ? null : { ...stripDuration(gen.rawVideo), durationSeconds: gen.rawVideo.durationSeconds },
    thumbnail: gen.thumbnail === null ? null : { url: gen.thumbnail.url, width: gen.thumbnail.width, height: gen.thumbnail.height },
    lastFrame: gen.lastFrame === null ? null : { url: gen.lastFrame.url, width: gen.lastFrame.width, height: gen.lastFrame.height },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Error messages

export const GENERIC_UPSTREAM_MESSAGE = 'The upstream returned an error';
const MAX_MESSAGE_LENGTH = 300;
// Where the message sits in OpenAI-style (`error.message`), Luma (`detail`) and relay (`message`) bodies.
const MESSAGE_KEYS = ['error', 'detail', 'message', 'msg', 'error_description'] as const;

/** Finds the human-readable message in an error body, whatever its shape. */
function extractMessageText(raw: unknown, depth: number): string | null {
  if (depth > 4) return null;
  if (typeof raw === 'string') {
    const text = raw.trim();
    if (text.startsWith('{')) {
      try {
        const nested = extractMessageText(JSON.parse(text) as unknown, depth + 1);
        if (nested !== null) return nested;
      } catch {
        // Not JSON after all: treat it as text.
      }
    }
    return text === '' ? null : text;
  }
  if (Array.isArray(raw)) {
    // FastAPI validation errors: `detail: [{ loc, msg, type }, …]`.
    const parts = raw.map((item) => extractMessageText(item, depth + 1)).filter((part) => part !== null);
    return parts.length === 0 ? null : parts.join('; ');
  }
  if (!isObject(raw)) return null;
  for (const key of MESSAGE_KEYS) {
    const found = extractMessageText(raw[key], depth + 1);
    if (found !== null) return found;
  }
  return null;
}

const looksLikeHtml = (text: string): boolean => /<\s*\/?\s*[a-z!][^>]*>/i.test(text);

const REQUEST_ID_PATTERNS: readonly RegExp[] = [
  /\s*[([]\s*request[ _-]?id\s*[:=][^)\]]*[)\]]/gi,
  /\s*\brequest[ _-]?id\s*[:=]\s*\S+/gi,
];

// Anything that could be a credential, whoever's it is: redacting a harmless token costs nothing.
const SECRET_PATTERNS: ReadonlyArray<readonly [RegExp, string]> = [
  [/\bBearer\s+[^\s,;"')]+/gi, 'Bearer [redacted]'],
  [/\b(?:sk|pk|rk)-[A-Za-z0-9_-]{6,}/g, '[redacted]'],
  [/\b(api[_-]?key|key|token|access[_-]?token|secret|password)(\s*[=:]\s*)["']?[A-Za-z0-9._~+/-]{8,}["']?/gi, '$1$2[redacted]'],
  [/\b[A-Za-z0-9_]{32,}\b/g, '[redacted]'],
];

function cleanMessage(text: string): string {
  let cleaned = text;
  for (const pattern of REQUEST_ID_PATTERNS) cleaned = cleaned.replace(pattern, '');
  for (const [pattern, replacement] of SECRET_PATTERNS) cleaned = cleaned.replace(pattern, replacement);
  cleaned = cleaned.replace(/[\u0000-\u001f\u007f\s]+/g, ' ').trim();
  return cleaned.length <= MAX_MESSAGE_LENGTH ? cleaned : `${cleaned.slice(0, MAX_MESSAGE_LENGTH - 1).trimEnd()}…`;
}

/** The upstream's message made safe for a client, or null when there is none worth passing on. */
export function extractSafeMessage(raw: unknown): string | null {
  const text = extractMessageText(raw, 0);
  if (text === null || looksLikeHtml(text)) return null;
  const cleaned = cleanMessage(text);
  return cleaned === '' ? null : cleaned;
}

/** A message safe to show a client: no HTML, no request ids, no credentials, at most 300 characters. */
export function sanitizeUpstreamMessage(raw: unknown): string {
  return extractSafeMessage(raw) ?? GENERIC_UPSTREAM_MESSAGE;
}

// ---------------------------------------------------------------------------------------------------------
// Error classification

export const SAFE_MESSAGES = {
  notFound: 'The upstream task does not exist',
  rejected: 'The upstream rejected the request',
  auth: 'The gateway could not authenticate with the upstream',
  rateLimited: 'The upstream is rate limiting requests; try again later',
  overBudget: 'Too many requests are waiting for the upstream; try again later',
  unavailable: 'The upstream is unavailable',
  unreachable: 'The upstream could not be reached',
  timeout: 'The upstream did not answer in time',
  unexpectedPayload: 'The upstream answered with an unexpected payload',
} as const;

/** `{ code: "task_not_exist" }` at the top level or inside `error`, or as the message itself. */
export function isTaskNotExist(body: unknown): boolean {
  if (!isObject(body)) return false;
  const candidates = [body.code, body.message];
  if (isObject(body.error)) candidates.push(body.error.code, body.error.message);
  return candidates.some((value) => typeof value === 'string' && value.trim().toLowerCase() === 'task_not_exist');
}

function headerValue(headers: UpstreamHeaders, name: string): string | null {
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== wanted || value === undefined) continue;
    const first = Array.isArray(value) ? value[0] : value;
    return typeof first === 'string' ? first : null;
  }
  return null;
}

/**
 * Maps an upstream error answer onto an `UpstreamError` (DESIGN §2.6, ELKAPI.md "Errors").
 * `body` is the parsed JSON body, or undefined when the answer was not JSON (then only the status counts).
 */
export function classifyUpstreamError(
  status: number,
  body: unknown,
  headers: UpstreamHeaders,
  nowMs: number = Date.now(),
): UpstreamError {
  // Relays drift: read their Retry-After leniently.
  const retryAfterMs = parseRetryAfter(headerValue(headers, 'retry-after'), nowMs, { lenient: true });
  if (status >= 400 && status < 500 && isTaskNotExist(body)) {
    return new UpstreamError('not_found', SAFE_MESSAGES.notFound, status, retryAfterMs);
  }
  if (status === 400 || status === 422) {
    // The one case where the upstream's own words reach the client (e.g. a moderation refusal).
    return new UpstreamError('rejected', extractSafeMessage(body) ?? SAFE_MESSAGES.rejected, status, retryAfterMs);
  }
  if (status === 401 || status === 403) {
    // Our key, our fault: never a message that blames the client or echoes the upstream's words about keys.
    return new UpstreamError('auth', SAFE_MESSAGES.auth, status, retryAfterMs);
  }
  if (status === 429) {
    return new UpstreamError('rate_limited', SAFE_MESSAGES.rateLimited, status, retryAfterMs);
  }
  return new UpstreamError('unavailable', SAFE_MESSAGES.unavailable, status, retryAfterMs);
}
