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
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';

/** Where the gateway serves the assets; the simulator's `assetBaseUrl` is `<gateway origin>` + this. */
const SANDBOX_ASSETS_PATH = '/sandbox/assets';

/** What the simulator reports for a completed video: the real properties of the committed file. */
export const sampleVideo = { file: 'sample.mp4', width: 640, height: 360, durationSeconds: 5 } as const;
export const sampleThumbnail = { file: 'thumbnail.jpg', width: 640, height: 360 } as const;

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

/**
 * `GET /sandbox/assets/<file>` (and HEAD) for the committed files only, with @fastify/static: content type and
 * length, a (weak) ETag and Last-Modified, a day of caching and byte ranges — iOS Safari refuses to play an MP4
 * whose server does not answer ranges with 206. Any other name goes to the app's not-found handler.
 */
export const sandboxAssets: FastifyPluginAsync = async (app) => {
  // Lets web apps on other origins embed the sample: replaces the app-wide `same-origin` (set earlier, in the
  // app's onRequest hook) on these routes only; this plugin is encapsulated.
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('cross-origin-resource-policy', 'cross-origin');
  });
  await app.register(fastifyStatic, {
    root: sandboxAssetsDir,
    prefix: `${SANDBOX_ASSETS_PATH}/`,
    // One route per file found at startup: nothing else on disk can ever be asked for.
    wildcard: false,
    decorateReply: false,
    maxAge: 24 * 60 * 60 * 1000, // 1 day
  });
};
