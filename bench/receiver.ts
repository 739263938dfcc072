// A webhook receiver as a client would run one, in its own process: every POST is verified with
// standardwebhooks on the raw body before it is counted. Control routes for figure 5:
//   GET /stats?path=/hooks/x   first arrival of each webhook-id sent to that path, and its event's `timestamp`
//   POST /hold, POST /release  stop answering (so the gateway's outbox fills up behind the attempts in flight),
//                              then answer everything held and from then on at once
// Env: WEBHOOK_SECRET.
import { createServer, type ServerResponse } from 'node:http';

import { Webhook } from 'standardwebhooks';

const webhook = new Webhook(process.env['WEBHOOK_SECRET'] ?? '');
const firstSeen = new Map<string, { path: string; arrivedAt: number; eventAt: number }>();
let verified = 0;
let rejected = 0;
let holding = false;
let held: ServerResponse[] = [];

const header = (value: string | string[] | undefined): string => (typeof value === 'string' ? value : '');

function eventTime(body: string): number {
  const event: unknown = JSON.parse(body);
  const timestamp = typeof event === 'object' && event !== null && 'timestamp' in event ? event.timestamp : undefined;
  return typeof timestamp === 'string' ? Date.parse(timestamp) : Number.NaN;
}

const server = createServer((request, response) => {
  const url = new URL(request.url ?? '/', 'http://receiver');
  if (request.method === 'GET' && url.pathname === '/stats') {
    const first = [...firstSeen.values()].filter((delivery) => delivery.path === url.searchParams.get('path'));
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify({ verified, rejected, arrivedAt: first.map((d) => d.arrivedAt), eventAt: first.map((d) => d.eventAt) }));
    return;
  }
  if (request.method === 'POST' && (url.pathname === '/hold' || url.pathname === '/release')) {
    holding = url.pathname === '/hold';
    if (!holding) for (const waiting of held) waiting.writeHead(204).end();
    held = [];
    response.end(JSON.stringify({ at: Date.now() }));
    return;
  }
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    const arrivedAt = Date.now();
    const body = Buffer.concat(chunks).toString('utf8');
    const id = header(request.headers['webhook-id']);
    try {
      webhook.verify(body, {
        'webhook-id': id,
        'webhook-timestamp': header(request.headers['webhook-timestamp']),
        'webhook-signature': header(request.headers['webhook-signature']),
      });
    } catch {
      rejected += 1;
      response.writeHead(400).end();
      return;
    }
    verified += 1;
    if (!firstSeen.has(id)) firstSeen.set(id, { path: url.pathname, arrivedAt, eventAt: eventTime(body) });
    if (holding) held.push(response);
    else response.writeHead(204).end();
  });
});

await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const address = server.address();
process.stdout.write(`receiver listening on http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}\n`);
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
