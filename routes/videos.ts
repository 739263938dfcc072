import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { CreateVideoBody, GetVideoQuery, Video, VideoParams } from '../schemas/video.js';
import type { RenderedVideo, VideoService } from '../src/videos/service.js';
import { ifNoneMatchHits } from '../src/videos/present.js';
import { clientOf, requireClient, type Authenticate } from './auth.js';
import { bearerSecurity, jsonResponse, problemsFor } from './responses.js';

export interface VideoRoutesOptions {
  videos: VideoService;
  authenticate: Authenticate;
}

const sendVideo = (reply: FastifyReply, rendered: RenderedVideo, statusCode: number): FastifyReply =>
  reply.code(statusCode).type('application/json; charset=utf-8').send(rendered.body);

export const videoRoutes: FastifyPluginAsyncTypebox<VideoRoutesOptions> = async (app, { videos, authenticate }) => {
  requireClient(app, authenticate);

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
          'or receive a signed webhook at `callbackUrl`. No video is stored when the upstream refuses the request.',
        security: bearerSecurity(),
        body: Type.Ref(CreateVideoBody),
        response: {
          202: jsonResponse(Type.Ref(Video), 'Accepted: the stored video, normally `queued`.', {
            location: { type: 'string', description: '`/videos/{id}` of the new video.' },
          }),
          ...problemsFor(400, 401, 413, 415, 422, 429, 500, 502, 503, 504),
        },
      },
    },
    async (request, reply) => {
      const rendered = await videos.create(clientOf(request), request.body);
      reply.header('location', `/videos/${rendered.video.id}`);
      return sendVideo(reply, rendered, 202);
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
          '`Cache-Control` is `private, no-cache` while running and `private, max-age=N` once terminal.',
        security: bearerSecurity(),
        params: VideoParams,
        querystring: GetVideoQuery,
        response: {
          200: jsonResponse(Type.Ref(Video), 'The video.', {
            etag: { type: 'string', description: 'Strong validator of this body; send it back in `If-None-Match`.' },
            'cache-control': { type: 'string', description: '`private, no-cache` while running; `private, max-age=N` once terminal.' },
          }),
          304: Type.Null({ description: 'Not modified: your cached copy (by `ETag`) is current.' }),
          ...problemsFor(400, 401, 404, 429, 500),
        },
      },
    },
    async (request, reply) => {
      const rendered = await videos.read(clientOf(request), request.params.id);
      reply.header('etag', rendered.etag).header('cache-control', videos.cacheControl(rendered));
      if (ifNoneMatchHits(request.headers['if-none-match'], rendered.etag)) return reply.code(304).send(null);
      return sendVideo(reply, rendered, 200);
    },
  );
};
