import { type Static, Type } from '@sinclair/typebox';

import { Timestamp } from './common.js';

/** `POST /videos/{id}/stream-tokens` answer (DESIGN §2.4). */
export const StreamToken = Type.Object(
  {
    token: Type.String({
      description: 'Pass as `?token=` to `GET /videos/{id}/events` of this video only. Opaque; do not parse.',
      examples: ['vst_djEuYWxpY2UudmlkXzAxSkRYWVo4TTZYMVpQM1Y5UjRRSzdUMkhDLjE3OTYyMDQ1MDA.Q2hhbmdlZC1ieS10aGUtZ2F0ZXdheS1vbmx5LWV4YW1wbGU'],
    }),
    expiresAt: { ...Timestamp, description: 'When the token stops opening streams (5 minutes after minting), ISO 8601 UTC.' },
  },
  { $id: 'StreamToken', additionalProperties: false },
);
export type StreamToken = Static<typeof StreamToken>;

/** `GET /videos/{id}/events` query: a stream token, for callers that cannot send `Authorization` (EventSource). */
export const VideoEventsQuery = Type.Object({
  token: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 512,
      description:
        'A stream token from `POST /videos/{id}/stream-tokens`, instead of `Authorization` (a browser `EventSource` ' +
        'cannot send headers). Accepted on this route only.',
    }),
  ),
});
export type VideoEventsQuery = Static<typeof VideoEventsQuery>;
