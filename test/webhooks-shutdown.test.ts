/**
 * Graceful shutdown (issue 3 point 7), on the real entry point in sandbox mode: SIGTERM stops claiming work, lets
 * webhook attempts in flight finish within a bound, then closes the server and the database; an attempt still
 * running at the bound is given back and sent after the next start.
 */
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';

import BetterSqlite3 from 'better-sqlite3';
import t, { type Test } from 'tap';
import { request } from 'undici';

import type { Video } from '../schemas/video.js';
import type { WebhookDeliveryRow } from '../src/store/tables.js';
import { startChildGateway, writeClientsFile } from './helpers/child-gateway.js';
import { clientKeys } from './helpers/gateway.js';
import { type ScriptedServer, sendText, startScriptedServer } from './helpers/scripted-server.js';
import { until } from './helpers/until.js';

t.setTimeout(180_000);

async function holdingReceiver(t: Test): Promise<{ server: ScriptedServer; held: ServerResponse[] }> {
  const server = await startScriptedServer();
  const held: ServerResponse[] = [];
  server.respond((_request, response) => void held.push(response));
  t.teardown(() => {
    held.forEach((response) => response.destroy());
    return server.close();
  });
  return { server, held };
}

function sandboxEnv(dir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: `sqlite:${join(dir, 'gateway.db')}`,
    CLIENTS_FILE: writeClientsFile(dir),
    LOG_LEVEL: 'info',
    SANDBOX_DURATION_MS: '300ms',
    SANDBOX_QUEUE_MS: '100ms',
    POLL_INTERVAL_MIN_MS: '50ms',
    POLL_INTERVAL_MAX_MS: '100ms',
    WEBHOOK_ALLOW_HTTP: 'true',
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    ...extra,
  };
}

async function createVideo(base: string, callbackUrl: string): Promise<string> {
  const response = await request(`${base}/videos`, {
    method: 'POST',
    headers: { authorization: `Bearer ${clientKeys.alice}`, 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'A tiger walking in snow', callbackUrl }),
  });
  if (response.statusCode !== 202) throw new Error(`create: ${response.statusCode}`);
  return ((await response.body.json()) as Video).id;
}

t.test('SIGTERM stops claiming, lets the attempt in flight finish and be recorded, then exits 0', async (t) => {
  const dir = t.testdir();
  const slow = await holdingReceiver(t);
  const failing = await startScriptedServer();
  failing.respond((_request, response) => sendText(response, 500, 'down'));
  t.teardown(() => failing.close());

  const gateway = await startChildGateway(t, sandboxEnv(dir, { WEBHOOK_RETRY_SCHEDULE: '1500ms' }));
  const slowVideo = await createVideo(gateway.url, `${slow.server.url}/hooks`);
  const failingVideo = await createVideo(gateway.url, `${failing.url}/hooks`);
  await until(() => slow.server.requests.length === 1 && failing.requests.length === 1, 'one attempt at each receiver', 30_000);

  gateway.process.kill('SIGTERM');
  await until(() => gateway.output().includes('"msg":"shutting down"'), 'the shutdown to begin', 10_000);
  // Hold the attempt in flight past the moment the failing receiver's retry falls due: a dispatcher still
  // claiming would send that retry now.
  const db = new BetterSqlite3(join(dir, 'gateway.db'), { readonly: true });
  t.teardown(() => db.close());
  const retry = db.prepare('select * from webhook_deliveries where video_id = ?').get(failingVideo) as WebhookDeliveryRow;
  t.equal(retry.status, 'retrying');
  await until(() => Date.now() > (retry.next_attempt_at ?? 0) + 200, 'the retry to fall due', 5_000);
  for (const response of slow.held.splice(0)) sendText(response, 204, '');

  const exit = await gateway.exited;
  t.equal(exit.code, 0, 'exits 0');
  t.equal(failing.requests.length, 1, 'no claim after SIGTERM: the due retry was left for the next start');

  const delivered = db.prepare('select * from webhook_deliveries where video_id = ?').get(slowVideo) as WebhookDeliveryRow;
  t.match(delivered, { status: 'delivered', attempts: 1, lease_until: null }, 'the attempt in flight finished and was recorded');
  t.match(db.prepare('select response_status from delivery_attempts where video_id = ?').get(slowVideo), { response_status: 204 });
  t.match(db.prepare('select * from webhook_deliveries where video_id = ?').get(failingVideo), {
    status: 'retrying',
    attempts: 1,
    lease_until: null,
  });
  t.match(gateway.output(), /"msg":"shutting down"/);
});

t.test('an attempt still running at the shutdown bound is aborted, given back, and sent after the next start', async (t) => {
  const dir = t.testdir();
  const stuck = await holdingReceiver(t);
  // The attempt timeout is far beyond the shutdown bound (5 s): only the bound can end this attempt.
  const env = sandboxEnv(dir, { WEBHOOK_TIMEOUT_MS: '2m' });
  const gateway = await startChildGateway(t, env);
  const videoId = await createVideo(gateway.url, `${stuck.server.url}/hooks`);
  await until(() => stuck.server.requests.length === 1, 'the attempt to reach the receiver', 30_000);

  const signalledAt = Date.now();
  gateway.process.kill('SIGTERM');
  const exit = await gateway.exited;
  const tookMs = Date.now() - signalledAt;
  // The attempt would hang for 2 min; close-with-grace kills the process (exit 1) after 10 s. Exiting 0 is the proof
  // that the 5 s grace aborted it; the lower bound, that the grace was given.
  t.equal(exit.code, 0, 'exits 0, not killed by close-with-grace');
  t.ok(tookMs >= 4_500, `waited the 5 s grace first (${tookMs} ms)`);
  t.match(gateway.output(), /aborting them/);

  const db = new BetterSqlite3(join(dir, 'gateway.db'), { readonly: true });
  t.teardown(() => db.close());
  t.match(
    db.prepare('select * from webhook_deliveries where video_id = ?').get(videoId),
    { status: 'pending', attempts: 0, lease_until: null },
    'given back, no attempt counted',
  );
  t.equal((db.prepare('select count(*) as n from delivery_attempts').get() as { n: number }).n, 0);

  // Next start: sent again at once (the receiver answers now) and recorded.
  stuck.server.respond((_request, response) => sendText(response, 204, ''));
  const restarted = await startChildGateway(t, env);
  await until(
    () =>
      (db.prepare('select status from webhook_deliveries where video_id = ?').get(videoId) as { status: string }).status === 'delivered',
    'the redelivery after restart',
    30_000,
  );
  t.equal(stuck.server.requests.length, 2);
  t.equal(stuck.server.requests[1]?.headers['webhook-id'], stuck.server.requests[0]?.headers['webhook-id'], 'the same event');
  restarted.process.kill('SIGTERM');
  t.equal((await restarted.exited).code, 0);
});
