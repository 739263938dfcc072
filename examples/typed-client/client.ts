/**
 * A typed client for the gateway, generated from `openapi.yaml` (`npm run client:types` writes `api.d.ts` with
 * openapi-typescript) and called through openapi-fetch: paths, parameters, bodies and answers are checked by the
 * compiler, so a spec regression breaks `npm run typecheck`. No casts.
 */
import createClient, { type Client } from 'openapi-fetch';

import type { components, paths } from './api.js';

export type Video = components['schemas']['Video'];
export type GatewayClient = Client<paths>;

export function createGatewayClient(baseUrl: string, apiKey: string, fetchImpl?: typeof fetch): GatewayClient {
  return createClient<paths>({ baseUrl, headers: { authorization: `Bearer ${apiKey}` }, ...(fetchImpl ? { fetch: fetchImpl } : {}) });
}

/** Starts a generation; throws with the problem's `code` when refused. */
export async function createVideo(client: GatewayClient, prompt: string): Promise<Video> {
  const { data, error } = await client.POST('/videos', { body: { prompt, aspectRatio: '9:16' } });
  if (error !== undefined) throw new Error(`create refused: ${error.code} ${error.detail}`);
  return data;
}

export type ConditionalRead = { changed: true; video: Video; etag: string | null } | { changed: false };

/**
 * Reads a video, sending the `ETag` you have in `If-None-Match` (declared in the spec, so no cast): a 304 means
 * your copy is current. With `waitSeconds` it long-polls for the next change.
 */
export async function readVideoIfChanged(client: GatewayClient, id: string, etag?: string, waitSeconds?: number): Promise<ConditionalRead> {
  const { data, error, response } = await client.GET('/videos/{id}', {
    params: {
      path: { id },
      query: waitSeconds === undefined ? {} : { wait: waitSeconds },
      header: etag === undefined ? {} : { 'if-none-match': etag },
    },
  });
  if (response.status === 304) return { changed: false };
  if (error !== undefined) throw new Error(`read refused: ${error.code} ${error.detail}`);
  return { changed: true, video: data, etag: response.headers.get('etag') };
}
