/**
 * Crash safety (DESIGN §3, issue 3 point 6): the gateway runs as a real child process, is killed with SIGKILL while
 * videos are in flight and webhook attempts are pending or mid-attempt, and restarts on the same database. Every
 * video must reach its terminal state and every receiver get every event at least once, signed, with no event
 * invented.
 *
 * The upstream is the sandbox simulator, but run in THIS process rather than inside the gateway (sandbox mode):
 * its tasks live in memory, and a simulator killed with the gateway would forget them — the real ElkAPI survives a
 * gateway crash, so the simulator has to as well.
 */
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';

import BetterSqlite3 from 'better-sqlite3';
import { Webhook } from 'standardwebhooks';
import t from 'tap';
import { request } from 'undici';

import type { WebhookEvent } from '../schemas/deliveries.js';
import type { Video } from '../schemas/video.js';
import { startSandbox } from '../src/sandbox/simulator.js';
import type { WebhookDeliveryRow } from '../src/store/tables.js';
import { startChildGateway, writeClientsFile } from './helpers/child-gateway.js';
import { clientKeys, webhookSecrets } from './helpers/gateway.js';
import { flatHeaders, type ScriptedServer, sendText, startScriptedServer } from './helpers/scripted-server.js';
import { until } from './helpers/until.js';

// Two gateway starts and a few seconds of real generation; the bound only matters if something is broken.
t.setTimeout(240_000);

const upstreamKey = 'elk-crash-test-key';

type OutboxRow = Pick<WebhookDeliveryRow, 'message_id' | 'video_id' | 'event_type' | 'status' | 'target_url'>;

t.test('SIGKILL mid-flight, restart on the same database: every video ends, every event arrives, none is invented', async (t) => {
  const dir = t.testdir();
  const databasePath = join(dir, 'gateway.db');
  const sandbox = await startSandbox({
    apiKey: upstreamKey,
    durationMs: 2_500,
    queueMs: 400,
    assetBaseUrl: 'http://127.0.0.1:9/sandbox/assets',
  });
  t.teardown(() => sandbox.close());

  const receivers: ScriptedServer[] = [];
  const newReceiver = async (): Promise<ScriptedServer> => {
    const server = await startScriptedServer();
    server.respond((_request, response) => sendText(response, 204, ''));
    receivers.push(server);
    t.teardown(() => server.close());
    return server;
  };
  const ok = await newReceiver();
  const flaky = await newReceiver(); // 500 to its first three requests
  flaky.respond((_request, response, index) => sendText(response, index < 3 ? 500 : 204, index < 3 ? 'boom' : ''));
  const hanging = await newReceiver(); // holds every request until after the crash
  const held: ServerResponse[] = [];
  hanging.respond((_request, response) => void held.push(response));
  t.teardown(() => held.forEach((response) => response.destroy()));

  const env = {
    DATABASE_URL: `sqlite:${databasePath}`,
    CLIENTS_FILE: writeClientsFile(dir),
    ELKAPI_API_KEY: upstreamKey,
    ELKAPI_BASE_URL: sandbox.url,
    LOG_LEVEL: 'warn',
    UPSTREAM_MAX_RPS: '1000',
    POLL_INTERVAL_MIN_MS: '200ms',
    POLL_INTERVAL_MAX_MS: '400ms',
    WEBHOOK_TIMEOUT_MS: '1s',
    WEBHOOK_RETRY_SCHEDULE: '100ms,200ms,300ms,500ms,1s,1s,1s,1s,1s,1s',
    WEBHOOK_ALLOW_HTTP: 'true',
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
  };

  const first = await startChildGateway(t, env);
  const create = async (base: string, body: Record<string, unknown>): Promise<string> => {
    const response = await request(`${base}/videos`, {
      method: 'POST',
      headers: { authorization: `Bearer ${clientKeys.alice}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const json = (await response.body.json()) as Video;
    if (response.statusCode !== 202) throw new Error(`create: ${response.statusCode} ${JSON.stringify(json)}`);
    return json.id;
  };
  const subscriptions = new Map<string, string[]>();
  const expectedStatus = new Map<string, 'completed' | 'failed'>();
  const video = async (base: string, receiver: ScriptedServer, webhookEvents: string[], fail = false): Promise<void> => {
    const id = await create(base, {
      prompt: fail ? 'A storm [fail]' : 'A tiger walking in snow',
      callbackUrl: `${receiver.url}/hooks`,
      webhookEvents,
    });
    subscriptions.set(id, webhookEvents);
    expectedStatus.set(id, fail ? 'failed' : 'completed');
  };
  const all = ['video.processing', 'video.completed', 'video.failed'];
  await video(first.url, ok, ['video.processing', 'video.completed']);
  await video(first.url, flaky, ['video.completed', 'video.failed']);
  await video(first.url, hanging, all);
  await video(first.url, ok, ['video.completed', 'video.failed'], true);
  await video(first.url, flaky, ['video.processing', 'video.failed'], true);

  // An attempt is mid-flight (held by the hanging receiver) and others are being retried…
  await until(() => hanging.requests.length >= 1 && flaky.requests.length >= 1, 'webhook traffic before the crash', 30_000);
  // …and two videos have only just been created.
  await video(first.url, ok, ['video.completed', 'video.failed']);
  await video(first.url, hanging, ['video.completed', 'video.failed']);

  // Kill between polls (no upstream request for 40 ms): a poll cut mid-flight keeps its video leased for a minute
  // (the poller's lease), which would only slow this test down. Webhook attempts are fair game at any instant.
  let seen = sandbox.stats.requests;
  let quietSince = Date.now();
  await until(
    () => {
      if (sandbox.stats.requests !== seen) {
        seen = sandbox.stats.requests;
        quietSince = Date.now();
      }
      return Date.now() - quietSince >= 40;
    },
    'a quiet moment upstream',
    30_000,
    2,
  );
  first.process.kill('SIGKILL');
  t.same(await first.exited, { code: null, signal: 'SIGKILL' });

  const db = new BetterSqlite3(databasePath, { readonly: true });
  t.teardown(() => db.close());
  const running = (db.prepare("select count(*) as n from videos where status in ('queued', 'processing')").get() as { n: number }).n;
  t.ok(running > 0, `videos were in flight at the crash (${running})`);
  const undelivered = (db.prepare("select count(*) as n from webhook_deliveries where status != 'delivered'").get() as { n: number }).n;
  t.ok(undelivered > 0, `deliveries were pending or mid-attempt at the crash (${undelivered})`);
  const heldAtCrash = hanging.requests.length;

  // The receiver comes back; the gateway restarts on the same file.
  hanging.respond((_request, response) => sendText(response, 204, ''));
  for (const response of held.splice(0)) response.destroy();
  const second = await startChildGateway(t, env);

  const settled = (): boolean => {
    const videos = db.prepare("select count(*) as n from videos where status in ('queued', 'processing')").get() as { n: number };
    const pending = db.prepare("select count(*) as n from webhook_deliveries where status != 'delivered'").get() as { n: number };
    return videos.n === 0 && pending.n === 0;
  };
  // 90 s covers the worst case: a poll cut mid-flight despite the quiet moment waits for its 60 s lease.
  await until(settled, 'every video terminal and every event delivered', 90_000, 100);

  second.process.kill('SIGTERM');
  t.equal((await second.exited).code, 0, 'a clean shutdown after the recovery');

  // Every video reached the state its prompt asks for.
  const videos = db.prepare('select id, status from videos').all() as Array<{ id: string; status: string }>;
  t.same(new Map(videos.map((row) => [row.id, row.status])), expectedStatus);

  // The outbox holds exactly the subscribed events: one terminal event per video when subscribed, a processing
  // event at most once (only when the poller saw the video processing).
  const outbox = db.prepare('select message_id, video_id, event_type, status, target_url from webhook_deliveries').all() as OutboxRow[];
  for (const [videoId, events] of subscriptions) {
    const rows = outbox.filter((row) => row.video_id === videoId);
    const terminalEvent = expectedStatus.get(videoId) === 'completed' ? 'video.completed' : 'video.failed';
    t.equal(
      rows.filter((row) => row.event_type === terminalEvent).length,
      events.includes(terminalEvent) ? 1 : 0,
      `${videoId}: ${terminalEvent} once`,
    );
    t.ok(
      rows.filter((row) => row.event_type === 'video.processing').length <= (events.includes('video.processing') ? 1 : 0),
      `${videoId}: processing at most once`,
    );
    t.ok(
      rows.every((row) => events.includes(row.event_type)),
      `${videoId}: only subscribed events`,
    );
  }
  t.ok(
    outbox.some((row) => row.event_type === 'video.processing'),
    'processing events were part of the run',
  );

  // Every request any receiver got is signed, known, and says what its outbox row says.
  const byId = new Map(outbox.map((row) => [row.message_id, row]));
  const bodies = new Map<string, string>();
  const received = new Map<string, number>();
  for (const receiver of receivers) {
    for (const hook of receiver.requests) {
      const headers = flatHeaders(hook.headers);
      const event = new Webhook(webhookSecrets.alice).verify(hook.body, headers) as WebhookEvent;
      const messageId = headers['webhook-id'] ?? '';
      const row = byId.get(messageId);
      if (row === undefined) {
        t.fail(`invented event ${messageId}`);
        continue;
      }
      t.equal(event.type, row.event_type, `${messageId}: type`);
      t.equal(event.data.id, row.video_id, `${messageId}: video`);
      t.equal(row.target_url, `${receiver.url}/hooks`, `${messageId}: sent to its video's callback only`);
      if (bodies.has(messageId)) t.equal(hook.body, bodies.get(messageId), `${messageId}: a repeat sends the same bytes`);
      bodies.set(messageId, hook.body);
      received.set(messageId, (received.get(messageId) ?? 0) + 1);
    }
  }
  for (const row of outbox) t.ok((received.get(row.message_id) ?? 0) >= 1, `${row.message_id} (${row.event_type}) received at least once`);
  const repeated = [...received.values()].filter((count) => count > 1).length;
  t.ok(repeated >= 1, `at-least-once: the attempt cut by the crash (and the retried ones) were sent again (${repeated} events)`);
  t.ok(hanging.requests.length > heldAtCrash, 'the receiver that held an attempt at the crash got it again');
});
