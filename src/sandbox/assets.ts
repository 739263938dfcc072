/**
 * Sample media for sandbox mode. The simulator's answers point at these files and the gateway serves them
 * itself (`GET /sandbox/assets/:file`), so a sandbox video plays on a real phone without any CDN.
 *
 * The files were generated once with ffmpeg (H.264 Constrained Baseline, yuv420p, `+faststart`, no audio:
 * the most widely playable MP4 there is) and are committed; ffmpeg is not a runtime dependency:
 *   ffmpeg -f lavfi -i testsrc2=size=640x360:rate=24 -t 5 -pix_fmt yuv420p -c:v libx264 -profile:v baseline \
 *          -level 3.0 -crf 30 -preset slow -g 48 -movflags +faststart -an sample.mp4
 *   ffmpeg -i sample.mp4 -frames:v 1 -q:v 4 thumbnail.jpg
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  FastifyTypeProvider,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerBase,
} from 'fastify';
// Type-only: brings in @fastify/swagger's `schema.hide` declaration.
import type {} from '@fastify/swagger';

/** Where the gateway serves the assets; the simulator's `assetBaseUrl` is `<gateway origin>` + this. */
export const SANDBOX_ASSETS_PATH = '/sandbox/assets';

/** What the simulator reports for a completed video: the real properties of the committed file. */
export const sampleVideo = { file: 'sample.mp4', width: 640, height: 360, durationSeconds: 5 } as const;
export const sampleThumbnail = { file: 'thumbnail.jpg', width: 640, height: 360 } as const;

const contentTypeByFile: ReadonlyMap<string, string> = new Map([
  [sampleVideo.file, 'video/mp4'],
  [sampleThumbnail.file, 'image/jpeg'],
]);

/**
 * Absolute path of `src/sandbox/assets`. The TypeScript build does not copy binaries, so from the compiled
 * `dist/src/sandbox` we walk up to the package root (the directory holding package.json) and point at the
 * source directory; under tsx the same walk finds the same directory.
 */
export const sandboxAssetsDir: string = resolveAssetsDir(dirname(fileURLToPath(import.meta.url)));

function resolveAssetsDir(moduleDir: string): string {
  for (let dir = moduleDir; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'src', 'sandbox', 'assets');
    if (dirname(dir) === dir) return join(moduleDir, 'assets'); // no package root: assume files sit beside us
  }
}

interface LoadedAsset {
  data: Buffer;
  contentType: string;
  etag: string;
}

// The files are small (~230 KB together): hold them in memory, which makes ranges a simple slice.
const loadedAssets = new Map<string, Promise<LoadedAsset>>();

function loadAsset(file: string): Promise<LoadedAsset> | null {
  const contentType = contentTypeByFile.get(file);
  if (contentType === undefined) return null;
  let loading = loadedAssets.get(file);
  if (!loading) {
    loading = readFile(join(sandboxAssetsDir, file)).then((data) => ({
      data,
      contentType,
      etag: `"${createHash('sha256').update(data).digest('base64url').slice(0, 27)}"`,
    }));
    loading.catch(() => loadedAssets.delete(file)); // a failed read is retried next time
    loadedAssets.set(file, loading);
  }
  return loading;
}

export type ByteRange = { start: number; end: number };

/**
 * Parses a `Range` header against a body of `size` bytes (RFC 9110 §14). Returns the inclusive range to send,
 * `'unsatisfiable'` (answer 416), or null to ignore the header and send the whole body — which the RFC allows
 * for anything we do not support, such as multiple ranges or other units.
 */
export function parseByteRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | null {
  if (header === undefined) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return null;
  const [, first = '', last = ''] = match;
  if (first === '') {
    if (last === '') return null;
    const suffixLength = Number(last); // "bytes=-500": the last 500 bytes
    if (suffixLength === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffixLength), end: size - 1 };
  }
  const start = Number(first);
  if (start >= size) return 'unsatisfiable';
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (end < start) return null; // syntactically invalid: ignore the header
  return { start, end };
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((candidate) => {
    const tag = candidate.trim();
    return tag === '*' || tag.replace(/^W\//, '') === etag;
  });
}

/**
 * Adds `GET /sandbox/assets/:file` (and Fastify's automatic HEAD) for the two sample files: exact
 * content-type, content-length, ETag, a day of caching and byte ranges — iOS Safari refuses to play an MP4
 * whose server does not answer ranges with 206. Anything else goes to the app's not-found handler.
 */
export function registerSandboxAssets<
  Server extends RawServerBase,
  Logger extends FastifyBaseLogger,
  TypeProvider extends FastifyTypeProvider,
>(
  // Generic so the app's own logger and type provider (pino, TypeBox) are accepted as they are.
  app: FastifyInstance<
    Server,
    RawRequestDefaultExpression<Server>,
    RawReplyDefaultExpression<Server>,
    Logger,
    TypeProvider
  >,
): void {
  app.get<{ Params: { file: string } }>(
    `${SANDBOX_ASSETS_PATH}/:file`,
    { schema: { hide: true } },
    async (request, reply) => {
      const loading = loadAsset(request.params.file);
      if (!loading) return reply.callNotFound();
      const asset = await loading;
      const size = asset.data.length;

      reply
        .header('accept-ranges', 'bytes')
        .header('cache-control', 'public, max-age=86400')
        .header('etag', asset.etag)
        // Lets web apps on other origins embed the sample (helmet defaults this header to same-origin).
        .header('cross-origin-resource-policy', 'cross-origin');

      if (etagMatches(request.headers['if-none-match'], asset.etag)) return reply.code(304).send();

      // If-Range: a client resuming a download of an older version gets the whole new file instead.
      const ifRange = request.headers['if-range'];
      const range =
        ifRange === undefined || ifRange === asset.etag ? parseByteRange(request.headers.range, size) : null;

      if (range === 'unsatisfiable') {
        return reply.code(416).header('content-range', `bytes */${size}`).send();
      }
      reply.header('content-type', asset.contentType);
      if (range) {
        return reply
          .code(206)
          .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
          .send(asset.data.subarray(range.start, range.end + 1));
      }
      return reply.send(asset.data);
    },
  );
}
