import { createHash } from 'node:crypto';

import type { Video, WebhookSummary } from '../../schemas/video.js';
import { toIso } from '../clock.js';
import { isTerminal } from '../lifecycle.js';
import type { VideoRecord, WebhookDeliveryState } from '../store/records.js';

/** A video ready to send: the exact bytes, their strong ETag and caching policy. */
export interface RenderedVideo {
  clientId: string;
  video: Video;
  body: string;
  etag: string;
  terminal: boolean;
  /** Epoch ms of the signed download URL's expiry, when completed. */
  downloadUrlExpiresAt: number | null;
  /** The stored row version it was rendered from (replicas skip announcements of versions they already hold). */
  version: number;
}

/** The public summary of a delivery state (DESIGN §2.2 `webhook`). Pure. */
export function toWebhookSummary(state: WebhookDeliveryState): WebhookSummary {
  // `delivering` is never written; read as what it was before the claim.
  const status: WebhookSummary['status'] = state.status === 'delivering' ? (state.attempts > 0 ? 'retrying' : 'pending') : state.status;
  const waiting = status === 'pending' || status === 'retrying';
  return {
    status,
    attempts: state.attempts,
    lastAttemptAt: state.lastAttemptAt === null ? null : toIso(state.lastAttemptAt),
    nextAttemptAt: waiting && state.nextAttemptAt !== null ? toIso(state.nextAttemptAt) : null,
    lastResponseStatus: state.lastResponseStatus,
  };
}

/** The public Video (DESIGN §2.2): camelCase, no upstream id, fixed field order. Pure. */
export function toVideo(record: VideoRecord, webhook: WebhookDeliveryState | null = record.webhook ?? null): Video {
  const { request } = record;
  return {
    id: record.id,
    status: record.status,
    prompt: request.prompt,
    aspectRatio: request.aspectRatio,
    loop: request.loop,
    model: request.model,
    resolution: request.resolution,
    duration: request.duration,
    keyframes: request.keyframes,
    callbackUrl: request.callbackUrl,
    webhookEvents: request.webhookEvents,
    metadata: request.metadata,
    estimatedWaitSeconds: isTerminal(record.status) ? null : record.estimatedWaitSeconds,
    result: record.result,
    failure: record.failure,
    webhook: webhook === null ? null : toWebhookSummary(webhook),
    createdAt: toIso(record.createdAt),
    updatedAt: toIso(record.updatedAt),
    completedAt: record.completedAt === null ? null : toIso(record.completedAt),
  };
}

/** Strong ETag over the exact bytes served. */
export const etagOf = (body: string): string => `"${createHash('sha256').update(body).digest('base64url').slice(0, 32)}"`;

/** A stored record as it is served: the public Video, its bytes and ETag. Pure. */
export function renderVideo(record: VideoRecord): RenderedVideo {
  const video = toVideo(record);
  const body = JSON.stringify(video);
  const expiresAt = video.result === null ? null : Date.parse(video.result.video.downloadUrlExpiresAt);
  return {
    clientId: record.clientId,
    video,
    body,
    etag: etagOf(body),
    terminal: isTerminal(record.status),
    downloadUrlExpiresAt: expiresAt,
    version: record.version,
  };
}

/** `If-None-Match` matches when it lists our tag (weak comparison, as RFC 9110 asks for GET) or is `*`. */
export function ifNoneMatchHits(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((candidate) => candidate.trim().replace(/^W\//, '') === etag);
}
