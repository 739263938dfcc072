/**
 * A minimal webhook receiver for the video gateway: verifies every request with the `standardwebhooks` library,
 * answers 2xx at once, and handles each event once (deliveries are at least once: dedupe by `webhook-id`).
 *
 *   WEBHOOK_SECRET=whsec_… npx tsx examples/webhook-receiver.ts        # listens on http://127.0.0.1:4000/hooks
 *
 * Then create a video with `"callbackUrl": "http://127.0.0.1:4000/hooks"` against a gateway started with
 * `WEBHOOK_ALLOW_HTTP=true WEBHOOK_ALLOW_PRIVATE_NETWORKS=true` (local testing only).
 */
import { createServer } from 'node:http';

import { Webhook, WebhookVerificationError } from 'standardwebhooks';

const secret = process.env['WEBHOOK_SECRET'];
if (secret === undefined || !secret.startsWith('whsec_')) {
  process.stderr.write('Set WEBHOOK_SECRET to your client’s webhook secret (whsec_…, printed with its API key).\n');
  process.exit(1);
}
const port = Number(process.env['PORT'] ?? 4000);
const webhook = new Webhook(secret);

interface VideoEvent {
  type: 'video.processing' | 'video.completed' | 'video.failed';
  timestamp: string;
  data: { id: string; status: string; result: { video: { url: string } } | null; failure: { code: string; message: string } | null };
}

/** Event ids already handled. Keep these in your database in production (with a TTL of a few days). */
const handled = new Set<string>();

const server = createServer((request, response) => {
  if (request.method !== 'POST' || request.url?.split('?')[0] !== '/hooks') {
    response.writeHead(404).end();
    return;
  }
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    // Verify the raw bytes exactly as received: re-serialised JSON would not match the signature.
    const body = Buffer.concat(chunks).toString('utf8');
    const headers = {
      'webhook-id': String(request.headers['webhook-id'] ?? ''),
      'webhook-timestamp': String(request.headers['webhook-timestamp'] ?? ''),
      'webhook-signature': String(request.headers['webhook-signature'] ?? ''),
    };
    let event: VideoEvent;
    try {
      event = webhook.verify(body, headers) as VideoEvent;
    } catch (error) {
      // Bad signature or a timestamp more than 5 minutes off: not from the gateway (or replayed).
      process.stdout.write(`rejected: ${error instanceof WebhookVerificationError ? error.message : String(error)}\n`);
      response.writeHead(400).end();
      return;
    }
    // Answer fast (the gateway waits 15 s at most) and do slow work afterwards, e.g. on a queue.
    response.writeHead(204).end();
    const id = headers['webhook-id'];
    if (handled.has(id)) {
      process.stdout.write(`duplicate ${id} ignored\n`);
      return;
    }
    handled.add(id);
    const { data } = event;
    const detail =
      event.type === 'video.completed'
        ? data.result?.video.url
        : event.type === 'video.failed'
          ? `${data.failure?.code}: ${data.failure?.message}`
          : '';
    // Events may arrive out of order (a retried video.processing after video.completed): trust data.status.
    process.stdout.write(`${event.type} ${data.id} (status ${data.status}) ${detail ?? ''}\n`);
  });
});

server.listen(port, '127.0.0.1', () => process.stdout.write(`Receiving webhooks on http://127.0.0.1:${port}/hooks\n`));
