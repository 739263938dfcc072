import { createHash } from 'node:crypto';

import type { IdempotencyRecord, StoredResponse } from '../store/records.js';
import type { UpstreamError } from '../upstream/types.js';

/*
 * Idempotency-Key on POST /videos (DESIGN §2.1, after the IETF httpapi "Idempotency-Key" draft). Pure rules;
 * the store keeps the keys and src/videos/create.ts runs the protocol around a create.
 */

/** Keys (and their stored responses) are kept this long, then a key may be used again. */
export const idempotencyRetentionMs = 24 * 60 * 60_000;

/**
 * A key still `in_progress` this long after its request began is taken to be orphaned (the process died
 * mid-request) and the next request with it runs again. Comfortably above the longest create, so a live first
 * request is never overtaken: DEFAULT_MAX_CREATE_QUEUE_MS (10 s) + DEFAULT_UPSTREAM_TIMEOUT_MS (15 s), src/upstream/client.ts.
 */
export const idempotencyInProgressTimeoutMs = 60_000;

/**
 * The draft sends the key as a Structured Field string (`"abc"`); many clients send it bare (`abc`).
 * Both name the same key.
 */
export function idempotencyKeyFrom(header: string): string {
  return header.length >= 2 && header.startsWith('"') && header.endsWith('"') ? header.slice(1, -1) : header;
}

/**
 * Object keys sorted at every level, no whitespace: two JSON values with the same content serialise
 * identically. Hand-written (a dozen lines) rather than an RFC 8785 library: a validated create body holds
 * only strings, booleans, objects and arrays, so JCS's number formatting never comes into play.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, entry]) => entry !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, entry]) => `${JSON.stringify(key)}:${canonicalJson(entry)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** SHA-256 over method, path and the canonical validated body: what "the same request" means for a key. */
export function requestFingerprint(method: string, path: string, body: unknown): string {
  return createHash('sha256')
    .update(`${method.toUpperCase()} ${path}\n${canonicalJson(body)}`)
    .digest('hex');
}

/** What a request carrying an already-known key gets. */
export type IdempotencyDecision =
  { kind: 'replay'; response: StoredResponse } | { kind: 'in_progress' } | { kind: 'reused' } | { kind: 'erased' };

/**
 * A known key with another fingerprint is a misuse (422) whatever its state; with the same fingerprint the
 * stored response is replayed, or 409 while the first request still runs. The key of an erased video answers
 * only that (404) until it expires: its answer and fingerprint went with the video, and running the request again
 * would start a second paid generation behind the client's back.
 */
export function decideForExistingKey(existing: IdempotencyRecord, fingerprint: string): IdempotencyDecision {
  if (existing.erasedAt !== null) return { kind: 'erased' };
  if (existing.fingerprint !== fingerprint) return { kind: 'reused' };
  if (existing.state === 'completed' && existing.response !== null) return { kind: 'replay', response: existing.response };
  return { kind: 'in_progress' };
}

/**
 * Which failed creates are final answers, stored and replayed under their key. Only the upstream's own refusal of
 * this exact request (`rejected`: 422 `upstream_rejected`, e.g. moderation): a retry would be refused again. Every
 * other failure releases the key so a retry can run: 5xx / 503 / 504 may well succeed later, and the gateway's own 400s
 * (an unusable keyframe video, a refused callback host) never reached the upstream. A 504 may have started a
 * paid generation that the gateway never heard of; the upstream offers no idempotency of its own, so a retry
 * may start a second one. That is the price of not leaving the client without any way to retry.
 */
export const isStoredOutcome = (error: UpstreamError): boolean => error.kind === 'rejected';
