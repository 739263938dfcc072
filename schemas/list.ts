import { type Static, Type } from '@sinclair/typebox';

import { Nullable, RefTo } from './common.js';
import { EndUserId, literals, Video, videoStatuses } from './video.js';

export const defaultListLimit = 20;

/** `GET /videos` query (DESIGN §2.4). */
export const ListVideosQuery = Type.Object({
  status: Type.Optional(literals(videoStatuses, 'Only videos in this status.')),
  endUserId: Type.Optional({
    ...EndUserId,
    description: 'App servers: only this end user’s videos. End users always list their own (another value is refused).',
  }),
  limit: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 100,
      default: defaultListLimit,
      description: `Videos per page, 1..100 (default ${defaultListLimit}).`,
    }),
  ),
  cursor: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: '^[A-Za-z0-9_-]+$',
      description: '`nextCursor` of the previous page, passed back as is (opaque).',
    }),
  ),
});
export type ListVideosQuery = Static<typeof ListVideosQuery>;

export const VideoList = Type.Object(
  {
    data: Type.Array(RefTo(Video), { description: 'Your videos, newest first.' }),
    nextCursor: Nullable(Type.String(), {
      description: 'Pass as `cursor` to get the next page; null on the last page.',
    }),
  },
  { $id: 'VideoList', additionalProperties: false },
);
export type VideoList = Static<typeof VideoList>;

/** `Idempotency-Key` on `POST /videos` (DESIGN §2.1). */
export const CreateVideoHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: '^[\\x20-\\x7E]+$',
      description:
        'Makes retries safe: the same key with the same body within 24 h replays the first answer ' +
        '(`idempotent-replayed: true`) instead of starting a second generation. Printable ASCII, 1..255 characters, ' +
        'scoped to your API key; a UUID is a good choice.',
    }),
  ),
});

/** `GET /videos/{id}/events` takes no query; the stream is documented as text. */
export const VideoEventStream = Type.String({
  description:
    'Server-Sent Events. `event: status` with `data:` the Video as JSON, on connect and on every status change; ' +
    'the stream ends after the terminal event, or with `event: deleted` (`data: {"id":"vid_…"}`) when the video is ' +
    'deleted. `: keep-alive` comment lines every 15 s.',
  examples: [
    'event: status\nid: 1764417598000\ndata: {"id":"vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC","status":"queued",…}\n\n',
    'event: deleted\nid: 1764417612000\ndata: {"id":"vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC"}\n\n',
  ],
});
