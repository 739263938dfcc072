/**
 * `npm run demo`: the whole product in one command, with no key and nothing to configure. Starts a sandbox gateway
 * (fast simulator schedule) and a local webhook receiver that verifies signatures, creates one video, draws a
 * progress bar from its Server-Sent Events (opened with a stream token, as a browser would), prints the verified
 * webhook and the playable URL, and exits 0. `--keep` keeps the gateway running afterwards (Ctrl-C to stop).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Webhook } from 'standardwebhooks';
import { EventSource, request } from 'undici';

import type { WebhookEvent } from '../schemas/deliveries.js';
import type { StreamToken } from '../schemas/stream-tokens.js';
import type { Video } from '../schemas/video.js';
import { createClientRegistry, newClientEntry } from '../src/auth/clients.js';
import { startLiveSandboxGateway } from '../src/sandbox/live-gateway.js';

const keep = process.argv.includes('--keep');
const deadlineMs = 60_000;
const expectedRenderMs = 4_000;
const out = (line: string): void => void process.stdout.write(`${line}\n`);

/** A 30-cell bar; on a terminal it redraws in place, elsewhere (CI, a pipe) one line per change. */
function progressBar(): { draw(fraction: number, label: string): void; done(): void } {
  const tty = process.stdout.isTTY;
  let lastLine = '';
  let lastLabel = '';
  return {
    draw(fraction, label) {
      const cells = Math.round(Math.min(1, Math.max(0, fraction)) * 30);
      const line = `[${'#'.repeat(cells)}${'.'.repeat(30 - cells)}] ${String(Math.round(fraction * 100)).padStart(3)}% ${label}`;
      if (tty && line !== lastLine) process.stdout.write(`\r${line}`);
      else if (!tty && label !== lastLabel) out(line);
      lastLine = line;
      lastLabel = label;
    },
    done() {
      if (tty) process.stdout.write('\n');
    },
  };
}

interface ReceivedWebhook {
  headers: IncomingHttpHeaders;
  body: string;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'video-gateway-demo-'));
  const { apiKey, entry } = newClientEntry({ id: 'demo', name: 'Demo' });

  // The receiver: verifies each webhook with the client's secret (Standard Webhooks), as a partner's server would.
  let onVerified: (event: WebhookEvent, webhookId: string) => void = () => {};
  const verified = new Promise<{ event: WebhookEvent; webhookId: string }>((resolve) => {
    onVerified = (event, webhookId) => resolve({ event, webhookId });
  });
  const verifier = new Webhook(entry.webhookSecret);
  const receiver = createServer((incoming, response) => {
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.on('end', () => {
      const received: ReceivedWebhook = { headers: incoming.headers, body: Buffer.concat(chunks).toString('utf8') };
      try {
        const event = verifier.verify(received.body, received.headers as Record<string, string>) as WebhookEvent;
        response.writeHead(204).end();
        onVerified(event, String(received.headers['webhook-id']));
      } catch (error) {
        out(`Webhook REJECTED: ${error instanceof Error ? error.message : String(error)}`);
        response.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const callbackUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/webhooks/videos`;

  const live = await startLiveSandboxGateway({
    clients: createClientRegistry({ clients: [entry] }),
    sqlitePath: join(dir, 'gateway.db'),
    env: {
      SANDBOX_DURATION_MS: `${expectedRenderMs}ms`,
      SANDBOX_QUEUE_MS: '1s',
      POLL_INTERVAL_MIN_MS: '250ms',
      POLL_INTERVAL_MAX_MS: '500ms',
      // The receiver is plain http on 127.0.0.1: allowed for this local demo only.
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    },
  });
  const stop = async (): Promise<void> => {
    await live.close();
    await new Promise<void>((resolve) => receiver.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  };
  out(`Sandbox gateway on ${live.url} (Swagger UI: ${live.url}/docs); no ElkAPI key, no real video is generated.`);
  out(`Webhook receiver on ${callbackUrl}`);

  const authorization = `Bearer ${apiKey}`;
  const created = await request(`${live.url}/videos`, {
    method: 'POST',
    headers: { authorization, 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'A red fox running through fresh snow at dawn', callbackUrl }),
  });
  const video = (await created.body.json()) as Video;
  if (created.statusCode !== 202) throw new Error(`POST /videos answered ${created.statusCode}: ${JSON.stringify(video)}`);
  out(`Created ${video.id} (${video.status}): POST /videos answered 202`);

  // A stream token, so the stream opens exactly as a browser's EventSource would (no Authorization header).
  const minted = await request(`${live.url}/videos/${video.id}/stream-tokens`, { method: 'POST', headers: { authorization } });
  const { token } = (await minted.body.json()) as StreamToken;
  const bar = progressBar();
  const startedAt = Date.now();
  let status = video.status;
  const ticker = setInterval(() => {
    // Between events the bar moves with the time the sandbox is expected to take, never past 95 %.
    if (status === 'queued' || status === 'processing') bar.draw(Math.min(0.95, (Date.now() - startedAt) / expectedRenderMs), status);
  }, 200);
  const final = await new Promise<Video>((resolve, reject) => {
    const events = new EventSource(`${live.url}/videos/${video.id}/events?token=${encodeURIComponent(token)}`);
    events.addEventListener('status', (event) => {
      const current = JSON.parse((event as unknown as { data: string }).data) as Video;
      status = current.status;
      const terminal = current.status === 'completed' || current.status === 'failed';
      bar.draw(terminal ? 1 : Math.min(0.95, (Date.now() - startedAt) / expectedRenderMs), current.status);
      if (terminal) {
        events.close();
        resolve(current);
      }
    });
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED) reject(new Error('the event stream closed before the video finished'));
    };
  });
  clearInterval(ticker);
  bar.done();
  if (final.status !== 'completed') throw new Error(`the video ended ${final.status}: ${JSON.stringify(final.failure)}`);

  const { event, webhookId } = await verified;
  out(`Webhook verified: ${event.type} for ${event.data.id} (webhook-id ${webhookId}, signature checked with the client's secret)`);
  out(`Playable URL: ${final.result?.video.url ?? '(none)'}`);
  out(`Thumbnail:    ${final.result?.thumbnail?.url ?? '(none)'}`);
  if (keep) {
    clearTimeout(deadline);
    out('Gateway kept running (--keep): open the URLs above; Ctrl-C to stop.');
    await new Promise<void>((resolve) => process.once('SIGINT', resolve));
  } else {
    out('(served while the demo runs: npm run demo -- --keep keeps it up)');
  }
  await stop();
  out('Demo finished.');
}

const deadline = setTimeout(() => {
  process.stderr.write(`The demo did not finish within ${deadlineMs / 1000} s.\n`);
  process.exit(1);
}, deadlineMs);
deadline.unref();

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`The demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
