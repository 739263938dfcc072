/**
 * What an upstream failure means (DESIGN §2.6, ELKAPI.md "Errors") and what a client may read of it: messages
 * with no HTML, no request ids, no credentials. Pure.
 */
import { isJsonObject } from '../lib/json.js';
import { parseRetryAfter } from '../lib/retry-after.js';
import { UpstreamError, type UpstreamHeaders } from './types.js';

// ---------------------------------------------------------------------------------------------------------
// Safe messages

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
  if (!isJsonObject(raw)) return null;
  for (const key of MESSAGE_KEYS) {
    const found = extractMessageText(raw[key], depth + 1);
    if (found !== null) return found;
  }
  return null;
}

const looksLikeHtml = (text: string): boolean => /<\s*\/?\s*[a-z!][^>]*>/i.test(text);

const REQUEST_ID_PATTERNS: readonly RegExp[] = [/\s*[([]\s*request[ _-]?id\s*[:=][^)\]]*[)\]]/gi, /\s*\brequest[ _-]?id\s*[:=]\s*\S+/gi];

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
  cleaned = cleaned.replace(/[\p{Cc}\s]+/gu, ' ').trim();
  return cleaned.length <= MAX_MESSAGE_LENGTH ? cleaned : `${cleaned.slice(0, MAX_MESSAGE_LENGTH - 1).trimEnd()}…`;
}

/** Removes exact secrets from a message before anything else (src/lib/secrets.ts); the identity when none are known. */
export type Scrub = (text: string) => string;
const keepText: Scrub = (text) => text;

/**
 * The upstream's message made safe for a client, or null when there is none worth passing on. `scrub` runs first,
 * on the whole text, so no shortening can leave part of a secret behind.
 */
export function extractSafeMessage(raw: unknown, scrub: Scrub = keepText): string | null {
  const text = extractMessageText(raw, 0);
  if (text === null || looksLikeHtml(text)) return null;
  const cleaned = cleanMessage(scrub(text));
  return cleaned === '' ? null : cleaned;
}

/** A message safe to show a client: no HTML, no request ids, no credentials, at most 300 characters. */
export function sanitizeUpstreamMessage(raw: unknown): string {
  return extractSafeMessage(raw) ?? GENERIC_UPSTREAM_MESSAGE;
}

// ---------------------------------------------------------------------------------------------------------
// Classification

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

/** The error for a 2xx answer the gateway cannot use (not JSON, not an object, no task id). */
export function unexpectedPayload(httpStatus: number | null = null): UpstreamError {
  return new UpstreamError('unavailable', SAFE_MESSAGES.unexpectedPayload, httpStatus);
}

/** `{ code: "task_not_exist" }` at the top level or inside `error`, or as the message itself. */
export function isTaskNotExist(body: unknown): boolean {
  if (!isJsonObject(body)) return false;
  const candidates = [body.code, body.message];
  if (isJsonObject(body.error)) candidates.push(body.error.code, body.error.message);
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
  scrub: Scrub = keepText,
): UpstreamError {
  // Relays drift: read their Retry-After leniently.
  const retryAfterMs = parseRetryAfter(headerValue(headers, 'retry-after'), nowMs, { lenient: true });
  if (status >= 400 && status < 500 && isTaskNotExist(body)) {
    return new UpstreamError('not_found', SAFE_MESSAGES.notFound, status, retryAfterMs);
  }
  if (status === 400 || status === 422) {
    // The one case where the upstream's own words reach the client (e.g. a moderation refusal).
    return new UpstreamError('rejected', extractSafeMessage(body, scrub) ?? SAFE_MESSAGES.rejected, status, retryAfterMs);
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
