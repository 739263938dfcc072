import { createHash } from 'node:crypto';
import type { Video, WebhookSummary } from '../../schemas/video.js';
import { toIso } from '../clock.js';
import type { VideoRecord } from '../store/types.js';

/** The public Video (DESIGN §2.2): camelCase, no upstream id, fixed field order. Pure. */
export function toVideo(record: VideoRecord, webhook: WebhookSummary | null = record.webhook ?? null): Video {
  const { request } = record;
  return {
    id: record.id,
    status: record.status,
    prompt: request.prompt,
    aspectRatio: request.aspectRatio as Video['aspectRatio'],
    loop: request.loop,
    model: request.model,
    resolution: request.resolution as Video['resolution'],
    duration: request.duration as Video['duration'],
    keyframes: request.keyframes,
    callbackUrl: request.callbackUrl,
    webhookEvents: request.webhookEvents,
    metadata: request.metadata,
    estimatedWaitSeconds: record.status === 'queued' || record.status === 'processing' ? record.estimatedWaitSeconds : null,
    result: record.result,
    failure: record.failure,
    webhook,
    createdAt: toIso(record.createdAt),
    updatedAt: toIso(record.updatedAt),
    completedAt: record.completedAt === null ? null : toIso(record.completedAt),
  };
}

/** Strong ETag over the exact bytes served. */
export const etagOf = (body: string): string => `"${createHash('sha256').update(body).digest('base64url').slice(0, 32)}"`;

/** `If-None-Match` matches when it lists our tag (weak comparison, as RFC 9110 asks for GET) or is `*`. */
export function ifNoneMatchHits(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((candidate) => candidate.trim().replace(/^W\//, '') === etag);
}
