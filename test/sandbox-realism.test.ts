// Sandbox mode as a new user meets it: the clip matches the requested orientation, the files are real and small,
// and the Video shows the settings the simulator actually used.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import t from 'tap';

import { sampleClipFor, sampleClips, sandboxAssetsDir } from '../src/sandbox/assets.js';
import { advanceAndPoll, createVideo, readVideo, startTestGateway } from './helpers/gateway.js';

/** Width and height of the first video track of an MP4 (`tkhd` box: 16.16 fixed point at its end). */
function mp4Dimensions(file: Buffer): { width: number; height: number } {
  for (let at = file.indexOf('tkhd'); at !== -1; at = file.indexOf('tkhd', at + 4)) {
    const size = file.readUInt32BE(at - 4);
    const end = at - 4 + size;
    const width = file.readUInt32BE(end - 8) / 65536;
    const height = file.readUInt32BE(end - 4) / 65536;
    if (width > 0 && height > 0) return { width, height };
  }
  throw new Error('no video track');
}

t.test('every shipped clip is a faststart MP4 under 100 KB (landscape: as before) with the size it claims', async (t) => {
  for (const [name, clip] of Object.entries(sampleClips)) {
    const video = await readFile(join(sandboxAssetsDir, clip.video.file));
    t.equal(video.subarray(4, 8).toString('latin1'), 'ftyp', `${name}: MP4`);
    t.equal(video.subarray(36, 40).toString('latin1'), 'moov', `${name}: faststart`);
    if (name !== 'landscape') t.ok(video.length < 100 * 1024, `${name}: ${video.length} bytes`);
    t.same(mp4Dimensions(video), { width: clip.video.width, height: clip.video.height }, `${name}: dimensions`);
    const thumbnail = await readFile(join(sandboxAssetsDir, clip.thumbnail.file));
    t.same([...thumbnail.subarray(0, 2)], [0xff, 0xd8], `${name}: JPEG thumbnail`);
  }
});

t.test('the clip follows the aspect ratio: wider, taller or square', async (t) => {
  for (const ratio of ['16:9', '4:3', '21:9']) t.equal(sampleClipFor(ratio), sampleClips.landscape, ratio);
  for (const ratio of ['9:16', '3:4', '9:21']) t.equal(sampleClipFor(ratio), sampleClips.portrait, ratio);
  t.equal(sampleClipFor('1:1'), sampleClips.square);
});

t.test('a 9:16 request gets a portrait clip, 1:1 a square one, served by the gateway', async (t) => {
  const gw = await startTestGateway(t, { gateway: { serveSandboxAssets: true } });
  const portrait = await createVideo(gw, { prompt: 'A tall waterfall', aspectRatio: '9:16' });
  const square = await createVideo(gw, { prompt: 'A square tile', aspectRatio: '1:1' });
  const landscape = await createVideo(gw, { prompt: 'A wide beach' });
  await advanceAndPoll(gw, 11_000);
  for (const [video, clip] of [
    [portrait, sampleClips.portrait],
    [square, sampleClips.square],
    [landscape, sampleClips.landscape],
  ] as const) {
    const read = await readVideo(gw, video.id);
    t.equal(read.status, 'completed');
    t.match(read.result?.video, { width: clip.video.width, height: clip.video.height, url: new RegExp(`/${clip.video.file}$`) });
    t.match(read.result?.thumbnail, { width: clip.thumbnail.width, height: clip.thumbnail.height });
    const served = await gw.app.inject({ url: new URL(read.result?.video.url ?? '').pathname });
    t.equal(served.statusCode, 200);
    t.same(mp4Dimensions(served.rawPayload), { width: clip.video.width, height: clip.video.height }, 'the file really is that shape');
  }
  t.ok(sampleClips.portrait.video.height > sampleClips.portrait.video.width, 'portrait is taller than wide');
});

t.test('the Video shows the model, resolution and duration the simulator used; chosen ones are kept', async (t) => {
  const gw = await startTestGateway(t);
  const defaults = await createVideo(gw, { prompt: 'A tiger walking in snow' });
  t.match(defaults, { model: 'ray-2', resolution: '720p', duration: '5s' });
  const chosen = await createVideo(gw, { prompt: 'A tiger walking in snow', model: 'ray-flash-2', resolution: '1080p', duration: '9s' });
  t.match(chosen, { model: 'ray-flash-2', resolution: '1080p', duration: '9s' });
  t.match(await readVideo(gw, defaults.id), { model: 'ray-2', resolution: '720p', duration: '5s' }, 'stored, not only answered');
});
