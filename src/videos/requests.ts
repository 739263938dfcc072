import {
  blankCharacters,
  blankNonCombiningCharacters,
  type CreateVideoBody,
  type Keyframe,
  type WebhookEventType,
} from '../../schemas/video.js';
import type { VideoRequest } from '../store/records.js';
import type { UpstreamCreateRequest, UpstreamFrame } from '../upstream/types.js';

const defaultWebhookEvents: WebhookEventType[] = ['video.completed', 'video.failed'];

// A trailing variation selector (❤️) stays with its character; leading ones attach to nothing.
const blankEdges = new RegExp(`^[${blankCharacters}]+|[${blankNonCombiningCharacters}]+$`, 'gu');

/** Applies the documented defaults and trims the prompt of blanks, invisible ones included. Pure. */
export function normalizeCreateBody(body: CreateVideoBody): VideoRequest {
  const keyframes =
    body.keyframes !== undefined && (body.keyframes.start !== undefined || body.keyframes.end !== undefined) ? body.keyframes : null;
  return {
    prompt: body.prompt.replace(blankEdges, ''),
    aspectRatio: body.aspectRatio ?? '16:9',
    loop: body.loop ?? false,
    model: body.model ?? null,
    resolution: body.resolution ?? null,
    duration: body.duration ?? null,
    keyframes,
    callbackUrl: body.callbackUrl ?? null,
    webhookEvents: body.webhookEvents ?? defaultWebhookEvents,
    metadata: body.metadata ?? null,
  };
}

/** Keyframes that reference one of the client's own videos, by position. */
export function referencedVideoIds(request: VideoRequest): Array<{ position: 'start' | 'end'; videoId: string }> {
  const references: Array<{ position: 'start' | 'end'; videoId: string }> = [];
  for (const position of ['start', 'end'] as const) {
    const frame = request.keyframes?.[position];
    if (frame !== undefined && 'videoId' in frame) references.push({ position, videoId: frame.videoId });
  }
  return references;
}

function toUpstreamFrame(frame: Keyframe, upstreamIds: ReadonlyMap<string, string>): UpstreamFrame {
  if ('imageUrl' in frame) return { type: 'image', url: frame.imageUrl };
  const id = upstreamIds.get(frame.videoId);
  if (id === undefined) throw new Error(`unresolved keyframe video ${frame.videoId}`);
  return { type: 'generation', id };
}

/** The upstream's snake_case create body; `upstreamIds` resolves keyframe video ids. Pure. */
export function toUpstreamCreateRequest(request: VideoRequest, upstreamIds: ReadonlyMap<string, string>): UpstreamCreateRequest {
  const upstream: UpstreamCreateRequest = { prompt: request.prompt, aspect_ratio: request.aspectRatio, loop: request.loop };
  if (request.model !== null) upstream.model = request.model;
  if (request.resolution !== null) upstream.resolution = request.resolution;
  if (request.duration !== null) upstream.duration = request.duration;
  if (request.keyframes !== null) {
    const { start, end } = request.keyframes;
    upstream.keyframes = {};
    if (start !== undefined) upstream.keyframes.frame0 = toUpstreamFrame(start, upstreamIds);
    if (end !== undefined) upstream.keyframes.frame1 = toUpstreamFrame(end, upstreamIds);
  }
  return upstream;
}
