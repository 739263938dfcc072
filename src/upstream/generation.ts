/**
 * ElkAPI's generation payloads, parsed into the gateway's types. Pure: no I/O, no clock (callers pass times in).
 *
 * The upstream speaks two shapes (see shared/upstream/ELKAPI.md): the official Luma shape on create
 * (`assets` null or `{ video, image }` URL strings) and the Luma web-app shape on query (`video`, `video_raw`,
 * `thumbnail`, `last_frame` objects). Relays drift, so parsing is liberal: anything unusable becomes null
 * rather than an error, except a missing task id, without which nothing can be tracked.
 */
import type { VideoResult, VideoStatus } from '../../schemas/video.js';
import { isJsonObject, type JsonObject } from '../lib/json.js';
import { extractSafeMessage, type Scrub, unexpectedPayload } from './failures.js';
import { downloadUrlExpiresAtMs } from './signed-url.js';
import type { UpstreamAsset, UpstreamGeneration, UpstreamVideoAsset } from './types.js';

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

/** An asset is either an object `{ url, width, height }` (web-app shape) or a bare URL (official `assets`). */
function parseAsset(value: unknown): UpstreamAsset | null {
  if (typeof value === 'string') {
    const url = toHttpUrl(value);
    return url === null ? null : { url, width: null, height: null };
  }
  if (!isJsonObject(value)) return null;
  const url = toHttpUrl(value.url);
  if (url === null) return null;
  return { url, width: toDimension(value.width), height: toDimension(value.height) };
}

function parseVideoAsset(value: unknown): UpstreamVideoAsset | null {
  const asset = parseAsset(value);
  if (asset === null) return null;
  const durationSeconds = isJsonObject(value) ? toPositiveNumber(value.duration) : null;
  return { ...asset, durationSeconds };
}

function parseMainVideo(value: unknown): UpstreamGeneration['video'] {
  const asset = parseVideoAsset(value);
  if (asset === null) return null;
  const downloadUrl = isJsonObject(value) ? toHttpUrl(value.download_url) : null;
  return { ...asset, downloadUrl };
}

/**
 * Normalises an upstream generation from either payload shape.
 * Throws `UpstreamError('unavailable')` when the payload is not an object with a usable string `id`. `scrub` removes
 * exact secrets (the gateway's own key, echoed back) from the failure reason.
 */
export function parseGeneration(json: unknown, scrub?: Scrub): UpstreamGeneration {
  if (!isJsonObject(json)) throw unexpectedPayload();
  const upstreamId = typeof json.id === 'string' ? json.id.trim() : '';
  if (upstreamId === '') throw unexpectedPayload();

  // Official Luma shape: `assets: { video: url, image: url }`, or null while running.
  const assets: JsonObject = isJsonObject(json.assets) ? json.assets : {};
  const state = typeof json.state === 'string' ? json.state.trim() : '';

  return {
    upstreamId,
    state,
    status: mapUpstreamState(json.state),
    estimateWaitSeconds: toNonNegativeNumber(json.estimate_wait_seconds),
    // It reaches clients as the failure message, so it gets the same treatment as error messages.
    failureReason: extractSafeMessage(json.failure_reason, scrub),
    video: parseMainVideo(json.video) ?? parseMainVideo(assets.video),
    rawVideo: parseVideoAsset(json.video_raw) ?? parseVideoAsset(assets.video_raw),
    thumbnail: parseAsset(json.thumbnail) ?? parseAsset(assets.image) ?? parseAsset(assets.thumbnail),
    lastFrame: parseAsset(json.last_frame) ?? parseAsset(assets.last_frame),
    createdAt: toCredibleIso(json.created_at),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Result

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
