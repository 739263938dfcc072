/**
 * Creates a video and follows it to the end with conditional long-polls.
 *
 *   GATEWAY_URL=http://127.0.0.1:3000 API_KEY=vgk_… npx tsx examples/typed-client/main.ts "A tiger walking in snow"
 */
import { createGatewayClient, createVideo, readVideoIfChanged } from './client.js';

const baseUrl = process.env['GATEWAY_URL'] ?? 'http://127.0.0.1:3000';
const apiKey = process.env['API_KEY'];
if (apiKey === undefined) {
  process.stderr.write('Set API_KEY to your client API key (vgk_…).\n');
  process.exit(1);
}
const client = createGatewayClient(baseUrl, apiKey);
const created = await createVideo(client, process.argv[2] ?? 'A tiger walking in snow');
process.stdout.write(`created ${created.id} (${created.status})\n`);

let etag: string | undefined;
let video = created;
while (video.status !== 'completed' && video.status !== 'failed') {
  const read = await readVideoIfChanged(client, created.id, etag, 30);
  if (!read.changed) continue;
  video = read.video;
  etag = read.etag ?? undefined;
  process.stdout.write(`${video.status}\n`);
}
process.stdout.write(video.status === 'completed' ? `${video.result?.video.url ?? ''}\n` : `failed: ${video.failure?.message ?? ''}\n`);
