// "The limit" of issue 9: bare Fastify (no logger, no plugins, no hooks) answering the gateway's own body bytes
// behind the same kind of key check (SHA-256 of the bearer key looked up in a Map). Run by bench/run.ts as its
// own process: BASELINE_BODIES_FILE (see lib/bodies.ts), PORT; prints the URL it listens on.
import { createHash } from 'node:crypto';

import Fastify from 'fastify';

import { readBodies } from './lib/bodies.js';

const bodies = await readBodies(process.env['BASELINE_BODIES_FILE'] ?? '');
const clients = new Map([[bodies.keySha256, { id: 'bench' }]]);
const videos = new Map(Object.entries(bodies.videos));
const json = 'application/json; charset=utf-8';

function authenticated(header: string | undefined): boolean {
  const key = header === undefined ? undefined : /^Bearer +(\S+)$/i.exec(header.trim())?.[1];
  return key !== undefined && key.length <= 1024 && clients.has(createHash('sha256').update(key, 'utf8').digest('hex'));
}

const app = Fastify({ logger: false });

app.get<{ Params: { id: string } }>('/videos/:id', async (request, reply) => {
  if (!authenticated(request.headers.authorization)) return reply.code(401).send();
  const video = videos.get(request.params.id);
  if (video === undefined) return reply.code(404).send();
  if (video.etag !== null && request.headers['if-none-match'] === video.etag) return reply.code(304).send();
  return reply.header('content-type', json).send(video.body);
});

app.get('/videos', async (request, reply) => {
  if (!authenticated(request.headers.authorization)) return reply.code(401).send();
  return reply.header('content-type', json).send(bodies.list);
});

const address = await app.listen({ port: Number(process.env['PORT'] ?? 0), host: '127.0.0.1' });
process.stdout.write(`baseline listening on ${address}\n`);
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => void app.close().then(() => process.exit(0)));
