import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyReply } from 'fastify';

import { RefTo } from '../schemas/common.js';
import { CreateVideoHeaders, defaultListLimit, ListVideosQuery, VideoEventStream, VideoList } from '../schemas/list.js';
import { StreamToken, VideoEventsQuery } from '../schemas/stream-tokens.js';
import { CreateVideoBody, GetVideoHeaders, GetVideoQuery, Video, VideoParams } from '../schemas/video.js';
import { toIso } from '../src/clock.js';
import { type Authenticate, type AuthenticateStreamToken, callerOf, requireClient } from '../src/http/auth.js';
import type { ClientRateLimits } from '../src/http/client-rate-limits.js';
import { whenClientLeaves } from '../src/http/connection.js';
import { ignoreEmptyBody, requireNoBody } from '../src/http/request-parsing.js';
import { callerSecurity, jsonResponse, problemsFor, rateLimitHeaders, requestIdHeader } from '../src/http/responses.js';
import { formatSseEvent, sseHeaders, sseKeepAlive } from '../src/http/sse.js';
import type { VideoCreator } from '../src/videos/create.js';
import type { VideoEraser } from '../src/videos/erase.js';
import { ifNoneMatchHits, type RenderedVideo } from '../src/videos/present.js';
import type { VideoService } from '../src/videos/service.js';
import type { StreamTokens } from '../src/videos/stream-tokens.js';
import type { ErasedVideo, VideoWatch } from '../src/videos/watch.js';

export interface VideoRoutesOptions {
  videos: VideoService;
  /** POST /videos with the Idempotency-Key protocol. */
  creator: VideoCreator;
  /** DELETE /videos/{id}. */
  eraser: VideoEraser;
  /** Long-poll and SSE waiters on the event bus. */
  watch: VideoWatch;
  /** Per-client rate limits, shared with the other authenticated plugins. */
  rateLimits: ClientRateLimits;
  authenticate: Authenticate;
  /** Mints the tokens `GET /videos/{id}/events?token=` accepts. */
  streamTokens: StreamTokens;
  authenticateStreamToken: AuthenticateStreamToken;
}

const videoCacheHeaders = {
  etag: { type: 'string', description: 'Strong validator of this body; send it back in `If-None-Match`.' },
  'cache-control': { type: 'string', description: '`private, no-cache` while running; `private, max-age=N` once terminal.' },
} as const;

const sendVideo = (reply: FastifyReply, rendered: RenderedVideo, statusCode: number): FastifyReply =>
  reply.code(statusCode).type('application/json; charset=utf-8').send(rendered.body);

/**
 * 304 without a payload: `send(null)` would serialize "null" against the 304 schema and send `content-length: 4`
 * with no body (RFC 9110 §8.6), which stalls clients that wait for those bytes.
 */
const sendNotModified = (reply: FastifyReply): FastifyReply => reply.code(304).send();

/** `status` event of a video stream; `id` is the video's `updatedAt` in epoch ms. */
const statusEvent = (rendered: RenderedVideo): string =>
  formatSseEvent({ event: 'status', id: String(Date.parse(rendered.video.updatedAt)), data: rendered.body });

/** The last event of a stream whose video was erased; `id` is the erasure's time in epoch ms. */
const deletedEvent = (tombstone: ErasedVideo): string =>
  formatSseEvent({ event: 'deleted', id: String(tombstone.deletedAt), data: JSON.stringify({ id: tombstone.id }) });

export const videoRoutes: FastifyPluginAsyncTypebox<VideoRoutesOptions> = async (
  app,
  { videos, creator, eraser, watch, rateLimits, authenticate, streamTokens, authenticateStreamToken },
) => {
  requireClient(app, authenticate, authenticateStreamToken);
  // After authentication: a 401 comes first and is never counted against a client.
  await rateLimits.install(app);

  app.post(
    '/videos',
    {
      schema: {
        tags: ['videos'],
        operationId: 'createVideo',
        summary: 'Start a video generation',
        description:
          'Submits a generation to the upstream and answers at once with the stored Video (normally `queued`). ' +
          'The gateway then polls the upstream itself: read the video with `GET /videos/{id}` (optionally `?wait=N`) ' +
          'or receive a signed webhook at `callbackUrl`. No video is stored when the upstream refuses the request. ' +
          'Send an `Idempotency-Key` to make retries safe: the same key and body within 24 h replay the first answer ' +
          '(`idempotent-replayed: true`) without a second generation; the same key with another body is a 422 ' +
          '`idempotency_key_reused`, and while the first request still runs a 409 `idempotency_key_in_use`; once the ' +
          'video it created is deleted, the key answers 404 `not_found` until it expires. ' +
          'Counts against `rateLimitPerMinute`; once valid (a refused request or an idempotent replay costs none), against ' +
          '`createLimitPerMinute` and, for a video of an end user, `endUserCreateLimitPerMinute`. End users (bearer JWT) ' +
          'cannot set `callbackUrl`; their videos carry their `endUserId`.',
        security: callerSecurity(),
        headers: CreateVideoHeaders,
        body: RefTo(CreateVideoBody),
        response: {
          202: jsonResponse(RefTo(Video), 'Accepted: the stored video, normally `queued`.', {
            ...rateLimitHeaders,
            location: { type: 'string', description: '`/videos/{id}` of the new video.' },
            'idempotent-replayed': {
              type: 'string',
              description: '`true` when this is the stored answer of an earlier request with the same `Idempotency-Key`.',
            },
          }),
          ...problemsFor(400, 401, 404, 409, 413, 415, 422, 429, 500, 502, 503, 504),
        },
      },
      config: { countsAsCreate: true },
    },
    async (request, reply) => {
      const answer = await creator.create(callerOf(request), request.body, {
        idempotencyKey: request.headers['idempotency-key'],
        requestId: request.id,
        // Create limits count here, once the request passed every rule: a 400 or a replay costs no create.
        admit: rateLimits.admitCreate(request, reply),
      });
      if (answer.replayed) reply.header('idempotent-replayed', 'true');
      // A stored answer is one of the documented statuses: 202, or a replayed 422 upstream_rejected.
      return reply
        .code(answer.status as 202 | 422)
        .headers(answer.headers)
        .send(answer.body);
    },
  );

  app.get(
    '/videos',
    {
      schema: {
        tags: ['videos'],
        operationId: 'listVideos',
        summary: 'List your videos',
        description:
          'Your videos, newest first, `limit` per page (1..100, default 20), optionally only one `status`. With an ' +
          'end-user token, only that end user’s videos; an app server may pass `endUserId` to list one end user’s. Pass ' +
          '`nextCursor` back as `cursor` for the next page; pages stay consistent while new videos are created. ' +
          'Never calls the upstream: a listed `downloadUrl` may be close to expiry, `GET /videos/{id}` refreshes it.',
        security: callerSecurity(),
        querystring: ListVideosQuery,
        response: {
          200: jsonResponse(RefTo(VideoList), 'A page of your videos.', {
            ...rateLimitHeaders,
            'cache-control': { type: 'string', description: '`private, no-cache`.' },
          }),
          ...problemsFor(400, 401, 429, 500),
        },
      },
    },
    async (request, reply) => {
      const { status, endUserId, cursor, limit } = request.query;
      const page = await videos.list(callerOf(request), { status, endUserId, cursor, limit: limit ?? defaultListLimit });
      return reply.code(200).type('application/json; charset=utf-8').header('cache-control', 'private, no-cache').send(page.body);
    },
  );

  app.get(
    '/videos/:id',
    {
      schema: {
        tags: ['videos'],
        operationId: 'getVideo',
        summary: 'Get a video',
        description:
          'Returns the Video. Never calls the upstream for a running video (the gateway polls it). Completed and failed ' +
          'videos carry a strong `ETag`; send it back in `If-None-Match` to get `304 Not Modified`. ' +
          '`Cache-Control` is `private, no-cache` while running and `private, max-age=N` once terminal. ' +
          'With `?wait=N` (1..60) it long-polls: it answers as soon as the status changes or the video is terminal, ' +
          'else after N seconds with the current state — and at once when the `If-None-Match` you send is already stale. ' +
          'Waiting costs no upstream call.',
        security: callerSecurity(),
        params: VideoParams,
        querystring: GetVideoQuery,
        headers: GetVideoHeaders,
        response: {
          200: jsonResponse(RefTo(Video), 'The video.', { ...rateLimitHeaders, ...videoCacheHeaders }),
          304: Type.Null({
            description: 'Not modified: your cached copy (by `ETag`) is current.',
            headers: { ...requestIdHeader, ...rateLimitHeaders, ...videoCacheHeaders },
          }),
          ...problemsFor(400, 401, 404, 429, 500),
        },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const { wait } = request.query;
      let rendered: RenderedVideo;
      if (wait === undefined) rendered = await videos.read(caller, request.params.id);
      else {
        const clientLeft = new AbortController();
        whenClientLeaves(request, reply, () => clientLeft.abort());
        rendered = await watch.waitForChange(caller, request.params.id, {
          waitMs: wait * 1000,
          signal: clientLeft.signal,
          ifNoneMatch: request.headers['if-none-match'],
        });
      }
      reply.header('etag', rendered.etag).header('cache-control', videos.cacheControl(rendered));
      if (ifNoneMatchHits(request.headers['if-none-match'], rendered.etag)) return sendNotModified(reply);
      return sendVideo(reply, rendered, 200);
    },
  );

  app.delete(
    '/videos/:id',
    {
      schema: {
        tags: ['videos'],
        operationId: 'deleteVideo',
        summary: 'Delete a video',
        description:
          'Erases the video: its prompt, metadata, keyframes, result URLs, the answer stored under its `Idempotency-Key` ' +
          'and its webhook bodies and delivery log are removed from the gateway; only a tombstone (id, owner, times) ' +
          'remains. From then on every route answers 404 for it, a second `DELETE` included. Tracking stops and webhooks ' +
          'not yet sent are dropped; open long-polls answer 404 and event streams end with a `deleted` event. A ' +
          'generation still running upstream may finish there and be charged. Send no body.',
        security: callerSecurity(),
        params: VideoParams,
        response: {
          204: Type.Null({ description: 'Deleted.', headers: { ...requestIdHeader, ...rateLimitHeaders } }),
          ...problemsFor(400, 401, 404, 429, 500),
        },
      },
    },
    async (request, reply) => {
      await eraser.erase(callerOf(request), request.params.id);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/videos/:id/stream-tokens',
    {
      // No body, an empty one (curl -d '', fetch with a JSON content type) or `{}`, as redeliver.
      onRequest: ignoreEmptyBody,
      preValidation: requireNoBody,
      schema: {
        tags: ['videos'],
        operationId: 'createStreamToken',
        summary: "Mint a stream token for a video's event stream",
        description:
          'A browser `EventSource` cannot send `Authorization`. Mint a token here (from your server, or from the browser ' +
          'with a short-lived credential) and open `GET /videos/{id}/events?token=<token>`. The token is valid for 5 ' +
          'minutes, for this one video and that one route; a stream opened before it expires runs to its end. ' +
          'Mint a new one to reconnect later. Send no body. An end user may mint tokens for its own videos only.',
        security: callerSecurity(),
        params: VideoParams,
        response: {
          200: jsonResponse(RefTo(StreamToken), 'The token and when it expires.', {
            'cache-control': { type: 'string', description: '`no-store`.' },
          }),
          ...problemsFor(400, 401, 404, 429, 500),
        },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      // Only for a video the caller owns (an end user: its own): anything else is a 404, as everywhere. The token
      // carries the end user too, so the stream it opens is read as that end user.
      await videos.read(caller, request.params.id);
      const minted = streamTokens.mint(caller.client.id, caller.endUserId, request.params.id);
      return reply
        .code(200)
        .header('cache-control', 'no-store')
        .send({ token: minted.token, expiresAt: toIso(minted.expiresAt) });
    },
  );

  app.get(
    '/videos/:id/events',
    {
      schema: {
        tags: ['videos'],
        operationId: 'streamVideoEvents',
        summary: "Stream a video's status changes (Server-Sent Events)",
        description:
          'A `text/event-stream`: one `status` event with the Video on connect and on every status change; the stream ' +
          'ends after the terminal (`completed` or `failed`) event, or with a `deleted` event when the video is deleted. A `: keep-alive` comment every 15 s keeps idle ' +
          'connections open. Reconnecting is safe: the first event is always the current state. Costs no upstream call. ' +
          'A browser `EventSource` (which cannot send headers) passes `?token=` from `POST /videos/{id}/stream-tokens` instead.',
        security: [...callerSecurity(), { streamToken: [] }],
        params: VideoParams,
        querystring: VideoEventsQuery,
        response: {
          200: {
            description: 'The event stream.',
            headers: { ...requestIdHeader, ...rateLimitHeaders, 'cache-control': { type: 'string', description: '`no-cache`.' } },
            content: { 'text/event-stream': { schema: VideoEventStream } },
          },
          ...problemsFor(400, 401, 404, 429, 500),
        },
      },
      config: { acceptsStreamToken: true },
    },
    async (request, reply) => {
      const stream = await watch.watch(callerOf(request), request.params.id);
      // From here on the route writes the raw response itself; headers set so far (x-request-id, rate limits) go along.
      reply.hijack();
      const response = reply.raw;
      for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) response.setHeader(name, value);
      response.writeHead(200, sseHeaders);
      // HEAD (Fastify serves it for every GET route) has no body: headers, then the end — no stream to keep open.
      if (request.method === 'HEAD') {
        stream.stop();
        response.end();
        return reply;
      }
      response.write(statusEvent(stream.initial));
      if (stream.initial.terminal) {
        response.end();
        return reply;
      }
      whenClientLeaves(request, reply, stream.stop);
      stream.start({
        onStatus(rendered) {
          response.write(statusEvent(rendered));
          if (rendered.terminal) response.end();
        },
        onKeepAlive: () => response.write(sseKeepAlive),
        onDeleted(tombstone) {
          response.end(deletedEvent(tombstone));
        },
        onShutdown: () => response.end(),
      });
      return reply;
    },
  );
};
