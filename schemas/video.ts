import { type Static, Type } from '@sinclair/typebox';

import { Nullable, Timestamp } from './common.js';

export const aspectRatios = ['16:9', '9:16', '1:1', '4:3', '3:4', '21:9', '9:21'] as const;
export const resolutions = ['540p', '720p', '1080p', '4k'] as const;
export const durations = ['5s', '9s'] as const;
export const webhookEventTypes = ['video.processing', 'video.completed', 'video.failed'] as const;
export const videoStatuses = ['queued', 'processing', 'completed', 'failed'] as const;

/** A string enum: validates like a union of literals, documents as a plain OpenAPI `enum`. */
export const literals = <T extends readonly string[]>(values: T, description?: string) =>
  Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...(description === undefined ? {} : { description }) });

export const VideoId = Type.String({
  pattern: '^vid_[0-9A-HJKMNP-TV-Z]{26}$',
  description: "The gateway's opaque, time-sortable video id.",
  examples: ['vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC'],
});

export const VideoStatus = literals(videoStatuses, 'Lifecycle state; `completed` and `failed` are terminal and never change.');
export type VideoStatus = Static<typeof VideoStatus>;
export const AspectRatio = literals(aspectRatios);
export const Resolution = literals(resolutions);
export const Duration = literals(durations);
export const WebhookEventType = literals(webhookEventTypes);
export type WebhookEventType = Static<typeof WebhookEventType>;

// The pattern insists on a host: `https://` alone or `https:///x` are valid URIs but name no server.
const HttpsUrl = Type.String({ format: 'uri', maxLength: 2048, pattern: '^https://[^/?#\\s]', description: 'Absolute `https` URL.' });

export const Keyframe = Type.Union(
  [
    Type.Object({ imageUrl: HttpsUrl }, { additionalProperties: false }),
    Type.Object({ videoId: VideoId }, { additionalProperties: false }),
  ],
  { description: 'An image by URL, or one of your own videos by id.' },
);
export type Keyframe = Static<typeof Keyframe>;

export const Keyframes = Type.Object(
  { start: Type.Optional(Keyframe), end: Type.Optional(Keyframe) },
  { additionalProperties: false, description: 'Maps to the upstream `frame0` / `frame1`.' },
);
export type Keyframes = Static<typeof Keyframes>;

export const Metadata = Type.Record(Type.String(), Type.String({ maxLength: 500 }), {
  maxProperties: 20,
  // A Record's key schema only shapes its type; `propertyNames` is what validates the keys.
  propertyNames: { minLength: 1, maxLength: 100 },
  description: 'Up to 20 string keys with string values (≤ 500 chars), echoed in responses and webhooks.',
});
export type Metadata = Static<typeof Metadata>;

/**
 * Characters that count as blank in a prompt: whitespace and everything invisible — control and format characters
 * (zero-width space/joiners, bidi controls, word joiner, BOM, soft hyphen, tag characters), separators, variation
 * selectors, the combining grapheme joiner, Hangul fillers and the braille blank. A regex class body (`u` flag).
 */
export const blankCharacters = '\\s\\p{C}\\p{Z}\\u115F\\u1160\\u2800\\u3164\\uFFA0\\u034F\\uFE00-\\uFE0F';
/** `blankCharacters` without the combining ones (variation selectors, CGJ), which belong to the character before. */
export const blankNonCombiningCharacters = '\\s\\p{C}\\p{Z}\\u115F\\u1160\\u2800\\u3164\\uFFA0';
/** A visible character, then anything, then another visible one: at least 3 characters once blanks are trimmed. */
export const promptPattern = `[^${blankCharacters}][\\s\\S]+[^${blankCharacters}]`;
/** What a client reads when the prompt fails `promptPattern`. */
export const promptPatternMessage = 'needs at least 3 characters besides blanks and invisible characters';

export const CreateVideoBody = Type.Object(
  {
    prompt: Type.String({
      minLength: 3,
      maxLength: 5000,
      // At least 3 characters once trimmed of blanks (invisible ones included): a prompt of blanks or zero-width
      // characters must not reach the (paid) upstream.
      pattern: promptPattern,
      description: 'What to generate; trimmed, 3..5000 characters.',
    }),
    aspectRatio: Type.Optional(literals(aspectRatios, 'Default `16:9`.')),
    loop: Type.Optional(Type.Boolean({ description: 'Default false.' })),
    model: Type.Optional(
      Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._-]+$', description: 'Passed through, e.g. `ray-2`.' }),
    ),
    resolution: Type.Optional(Resolution),
    duration: Type.Optional(Duration),
    keyframes: Type.Optional(Keyframes),
    callbackUrl: Type.Optional(
      Type.String({ minLength: 1, maxLength: 2048, description: 'Absolute `https` URL that receives signed webhooks.' }),
    ),
    webhookEvents: Type.Optional(
      Type.Array(WebhookEventType, { uniqueItems: true, minItems: 1, description: 'Default: `video.completed` and `video.failed`.' }),
    ),
    metadata: Type.Optional(Metadata),
  },
  {
    $id: 'CreateVideoRequest',
    additionalProperties: false,
    examples: [
      {
        prompt: 'A serene lake surrounded by mountains at sunset',
        aspectRatio: '16:9',
        loop: false,
        callbackUrl: 'https://example.com/hooks/videos',
        metadata: { userId: 'u_42' },
      },
    ],
  },
);
export type CreateVideoBody = Static<typeof CreateVideoBody>;

export const VideoAsset = Type.Object({
  url: Type.String(),
  width: Nullable(Type.Integer()),
  height: Nullable(Type.Integer()),
});
export const VideoFile = Type.Object({
  url: Type.String({ description: 'CDN URL of the file.' }),
  downloadUrl: Type.String({ description: 'Signed download link; refreshed by the gateway before it expires.' }),
  downloadUrlExpiresAt: Timestamp,
  width: Nullable(Type.Integer()),
  height: Nullable(Type.Integer()),
  durationSeconds: Nullable(Type.Number()),
});
export const RawVideoFile = Type.Object({
  url: Type.String(),
  width: Nullable(Type.Integer()),
  height: Nullable(Type.Integer()),
  durationSeconds: Nullable(Type.Number()),
});

export const VideoResult = Type.Object({
  video: VideoFile,
  rawVideo: Nullable(RawVideoFile),
  thumbnail: Nullable(VideoAsset),
  lastFrame: Nullable(VideoAsset),
});
export type VideoResult = Static<typeof VideoResult>;

export const failureCodes = ['upstream_failed', 'timed_out', 'upstream_lost', 'submit_interrupted'] as const;
export const VideoFailure = Type.Object({
  code: literals(failureCodes),
  message: Type.String(),
});
export type VideoFailure = Static<typeof VideoFailure>;

export const webhookStates = ['pending', 'delivered', 'retrying', 'failed'] as const;
export const WebhookSummary = Type.Object({
  status: literals(webhookStates),
  attempts: Type.Integer({ minimum: 0 }),
  lastAttemptAt: Nullable(Timestamp),
  nextAttemptAt: Nullable(Timestamp),
  lastResponseStatus: Nullable(Type.Integer()),
});
export type WebhookSummary = Static<typeof WebhookSummary>;

export const Video = Type.Object(
  {
    id: VideoId,
    status: VideoStatus,
    prompt: Type.String(),
    aspectRatio: AspectRatio,
    loop: Type.Boolean(),
    model: Nullable(Type.String()),
    resolution: Nullable(Resolution),
    duration: Nullable(Duration),
    keyframes: Nullable(Keyframes),
    callbackUrl: Nullable(Type.String()),
    webhookEvents: Type.Array(WebhookEventType),
    metadata: Nullable(Metadata),
    estimatedWaitSeconds: Nullable(Type.Number({ description: "Upstream's estimate while running." })),
    result: Nullable(VideoResult),
    failure: Nullable(VideoFailure),
    webhook: Nullable(WebhookSummary),
    createdAt: Timestamp,
    updatedAt: Timestamp,
    completedAt: Nullable(Timestamp),
  },
  {
    $id: 'Video',
    additionalProperties: false,
    examples: [
      {
        id: 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC',
        status: 'completed',
        prompt: 'A serene lake surrounded by mountains at sunset',
        aspectRatio: '16:9',
        loop: false,
        model: null,
        resolution: null,
        duration: null,
        keyframes: null,
        callbackUrl: 'https://example.com/hooks/videos',
        webhookEvents: ['video.completed', 'video.failed'],
        metadata: { userId: 'u_42' },
        estimatedWaitSeconds: null,
        result: {
          video: {
            url: 'https://storage.cdn-luma.com/dream-machine/4cd5e5d4/generation.mp4',
            downloadUrl:
              'https://storage.cdn-luma.com/dream-machine/4cd5e5d4/generation.mp4?X-Amz-Date=20261129T140000Z&X-Amz-Expires=3600',
            downloadUrlExpiresAt: '2026-11-29T15:00:00.000Z',
            width: 1360,
            height: 752,
            durationSeconds: 5.041667,
          },
          rawVideo: null,
          thumbnail: { url: 'https://imagedelivery.net/bbccab18/public', width: 1360, height: 752 },
          lastFrame: { url: 'https://storage.cdn-luma.com/dream-machine/5d994815/last_frame.jpg', width: 1360, height: 752 },
        },
        failure: null,
        webhook: {
          status: 'delivered',
          attempts: 1,
          lastAttemptAt: '2026-11-29T14:00:11.000Z',
          nextAttemptAt: null,
          lastResponseStatus: 204,
        },
        createdAt: '2026-11-29T13:59:58.000Z',
        updatedAt: '2026-11-29T14:00:10.000Z',
        completedAt: '2026-11-29T14:00:10.000Z',
      },
    ],
  },
);
export type Video = Static<typeof Video>;

export const VideoParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64, description: 'Video id (`vid_…`).' }) });
export const GetVideoQuery = Type.Object({
  wait: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 60, description: 'Long-poll: answer as soon as the status changes, or after this many seconds.' }),
  ),
});
