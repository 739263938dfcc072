/**
 * Sample media for sandbox mode. The simulator's answers point at these files and the gateway serves them
 * itself (`GET /sandbox/assets/:file`), so a sandbox video plays on a real phone without any CDN.
 *
 * The files were generated once with ffmpeg (H.264 Constrained Baseline, yuv420p, `+faststart`, no audio:
 * the most widely playable MP4 there is) and are committed; ffmpeg is not a runtime dependency:
 *   ffmpeg -f lavfi -i testsrc2=size=640x360:rate=24 -t 5 -pix_fmt yuv420p -c:v libx264 -profile:v baseline \
 *          -level 3.0 -crf 30 -preset slow -g 48 -movflags +faststart -an sample.mp4
 *   ffmpeg -i sample.mp4 -frames:v 1 -q:v 4 thumbnail.jpg
 * and the portrait (9:16) and square (1:1) ones, each under 100 KB:
 *   ffmpeg -f lavfi -i testsrc2=size=288x512:rate=24 -t 5 -pix_fmt yuv420p -c:v libx264 -profile:v baseline \
 *          -level 3.0 -crf 36 -preset slow -g 48 -movflags +faststart -an sample-portrait.mp4   (360x360: square)
 *   ffmpeg -i sample-portrait.mp4 -frames:v 1 -q:v 6 thumbnail-portrait.jpg
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';

/** Where the gateway serves the assets; the simulator's `assetBaseUrl` is `<gateway origin>` + this. */
const SANDBOX_ASSETS_PATH = '/sandbox/assets';

export interface SampleClip {
  video: { file: string; width: number; height: number; durationSeconds: number };
  thumbnail: { file: string; width: number; height: number };
}

/** What the simulator reports for a completed video: the real properties of the committed files. */
export const sampleClips = {
  landscape: {
    video: { file: 'sample.mp4', width: 640, height: 360, durationSeconds: 5 },
    thumbnail: { file: 'thumbnail.jpg', width: 640, height: 360 },
  },
  portrait: {
    video: { file: 'sample-portrait.mp4', width: 288, height: 512, durationSeconds: 5 },
    thumbnail: { file: 'thumbnail-portrait.jpg', width: 288, height: 512 },
  },
  square: {
    video: { file: 'sample-square.mp4', width: 360, height: 360, durationSeconds: 5 },
    thumbnail: { file: 'thumbnail-square.jpg', width: 360, height: 360 },
  },
} as const satisfies Record<string, SampleClip>;

/** The landscape sample (16:9), the default. */
export const sampleVideo = sampleClips.landscape.video;
export const sampleThumbnail = sampleClips.landscape.thumbnail;

/** The sample in the orientation of an aspect ratio (`W:H`): wider than tall, taller than wide, or square. */
export function sampleClipFor(aspectRatio: string): SampleClip {
  const [width, height] = aspectRatio.split(':').map(Number);
  if (width === undefined || height === undefined || !(width > 0) || !(height > 0)) return sampleClips.landscape;
  if (width === height) return sampleClips.square;
  return width > height ? sampleClips.landscape : sampleClips.portrait;
}

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
