/*
 * Several replicas, proven with real processes (issue 8, DESIGN §4.5): three gateway child processes on one
 * Postgres schema and one Redis key prefix of this test's own, a sandbox upstream in THIS process behind a scripted
 * proxy that tells the replicas apart (each replica gets its own path prefix) and logs every query, and a webhook
 * receiver over real HTTP. One replica is SIGKILLed mid-flight and restarted.
 */
import { writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';

import { Webhook } from 'standardwebhooks';
import t from 'tap';
import { request } from 'undici';

import type { WebhookEvent } from '../schemas/deliveries.js';
import type { Video } from '../schemas/video.js';
import { startSandbox } from '../src/sandbox/simulator.js';
import { type ChildGateway, startChildGateway } from './helpers/child-gateway.js';
import { clientKeys, testClientsFile, webhookSecrets } from './helpers/gateway.js';
import { freshSchema, postgresOrSkip } from './helpers/postgres.js';
import { redisTestSpace, redisUrl, requireRedis } from './helpers/redis.js';
import { flatHeaders, type RecordedRequest, sendText, startScriptedServer } from './helpers/scripted-server.js';
import { until } from './helpers/until.js';

// Three starts, a restart and a few seconds of generation; the bound only matters if something is broken.
t.setTimeout(180_000);

const upstreamKey = 'elk-replicas-test-key';
const POLL_MIN_MS = 300;
const BOB_PER_MINUTE = 60;
const VIDEOS = 200;
const generations = '/dream-machine/v1/generations';

const server = await postgresOrSkip(t);
const redisUp = server === null ? false : await requireRedis(t);

interface Query {
  replica: number;
  upstreamId: string;
  at: number;
}

if (server !== null && redisUp) {
  t.test('three replicas, one database: every video once, every event delivered, limits shared', async (t) => {
    const dir = t.testdir();
    const schema = await freshSchema(t, server);
    const redis = await redisTestSpace(t);
    const sandbox = await startSandbox({ apiKey: upstreamKey, durationMs: 1_500, queueMs: 300, assetBaseUrl: 'http://127.0.0.1:9/a' });
    t.teardown(() => sandbox.close());

    // The upstream as the replicas see it: `/r<N>/…` is replica N. Queries are logged; creates counted.
    const queries: Query[] = [];
    const createsBy = [0, 0, 0];
    const upstreamIdByPrompt = new Map<string, string>();
    /** Upstream ids whose answers to some replicas stay what they were (to pin which replica sees a completion). */
    const frozen = new Map<string, { for: Set<number>; body: string }>();
    const lastBody = new Map<string, string>();
    /** When the proxy finished answering a query that reported the task completed, per upstream id and replica. */
    const completedAnsweredAt = new Map<string, { replica: number; at: number }>();
    const proxy = await startScriptedServer();
    t.teardown(() => proxy.close());
    proxy.respond(async (incoming: RecordedRequest, response: ServerResponse) => {
      const match = /^\/r(\d)(\/.*)$/.exec(incoming.url);
      if (match === null) return sendText(response, 404, 'unknown replica');
      const replica = Number(match[1]);
      const path = match[2] ?? '';
      const queried = path.startsWith(`${generations}/`) ? decodeURIComponent(path.slice(generations.length + 1)) : null;
      if (queried !== null) {
        queries.push({ replica, upstreamId: queried, at: Date.now() });
        const pinned = frozen.get(queried);
        if (pinned?.for.has(replica) === true) return sendText(response, 200, pinned.body, { 'content-type': 'application/json' });
      }
      const answer = await request(`${sandbox.url}${path}`, {
        method: incoming.method === 'POST' ? 'POST' : 'GET',
        headers: { authorization: incoming.headers.authorization ?? '', 'content-type': 'application/json' },
        ...(incoming.method === 'POST' ? { body: incoming.body } : {}),
      });
      const text = await answer.body.text();
      if (incoming.method === 'POST' && answer.statusCode < 300) {
        createsBy[replica] = (createsBy[replica] ?? 0) + 1;
        const created = JSON.parse(text) as { id?: string };
        const prompt = (JSON.parse(incoming.body) as { prompt?: string }).prompt ?? '';
        if (created.id !== undefined) upstreamIdByPrompt.set(prompt, created.id);
      }
      if (queried !== null) lastBody.set(queried, text);
      response.writeHead(answer.statusCode, { 'content-type': 'application/json' });
      response.end(text, () => {
        if (queried !== null && /"state":\s*"completed"/.test(text) && !completedAnsweredAt.has(queried)) {
          completedAnsweredAt.set(queried, { replica, at: Date.now() });
        }
      });
    });

    const receiver = await startScriptedServer();
    t.teardown(() => receiver.close());
    receiver.respond((_request, response) => sendText(response, 204, ''));

    const clientsFile = join(dir, 'clients.json');
    writeFileSync(
      clientsFile,
      JSON.stringify({
        clients: testClientsFile.clients.map((client) =>
          client.id === 'alice'
            ? { ...client, rateLimitPerMinute: 100_000, createLimitPerMinute: 100_000 }
            : { ...client, rateLimitPerMinute: BOB_PER_MINUTE },
        ),
      }),
    );
    const env = (replica: number): Record<string, string> => ({
      DATABASE_URL: schema.url,
      REDIS_URL: redisUrl,
      REDIS_KEY_PREFIX: redis.prefix,
      GATEWAY_SECRET: 'replicas-test-secret-0123456789abcdefghij',
      CLIENTS_FILE: clientsFile,
      ELKAPI_API_KEY: upstreamKey,
      ELKAPI_BASE_URL: `${proxy.url}/r${replica}`,
      LOG_LEVEL: 'warn',
      UPSTREAM_MAX_RPS: '1000',
      POLL_INTERVAL_MIN_MS: `${POLL_MIN_MS}ms`,
      POLL_INTERVAL_MAX_MS: '600ms',
      POLL_LEASE_MS: '2s',
      WEBHOOK_TIMEOUT_MS: '1s',
      WEBHOOK_RETRY_SCHEDULE: '100ms,200ms,500ms,1s,1s,1s',
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    });
    const replicas: ChildGateway[] = [];
    for (const index of [0, 1, 2]) replicas.push(await startChildGateway(t, env(index)));
    const base = (index: number): string => replicas[index]?.url ?? '';

    const alice = { authorization: `Bearer ${clientKeys.alice}` };
    const create = async (url: string, body: Record<string, unknown>): Promise<string> => {
      const response = await request(`${url}/videos`, {
        method: 'POST',
        headers: { ...alice, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const json = (await response.body.json()) as Video;
      if (response.statusCode !== 202) throw new Error(`create on ${url}: ${response.statusCode} ${JSON.stringify(json)}`);
      return json.id;
    };
    const getVideo = async (url: string, id: string, query = ''): Promise<{ status: number; body: string }> => {
      const response = await request(`${url}/videos/${id}${query}`, { headers: alice });
      return { status: response.statusCode, body: await response.body.text() };
    };

    // 200 videos round-robin over the live replicas; every third with a callback. Replica 2 dies at 100.
    const subscribed = new Map<string, string[]>();
    const ids: string[] = [];
    const live = [0, 1, 2];
    for (let n = 0; n < VIDEOS; n += 1) {
      if (n === 100) {
        replicas[2]?.process.kill('SIGKILL');
        t.same(await replicas[2]?.exited, { code: null, signal: 'SIGKILL' }, 'replica 2 killed mid-flight');
        live.splice(live.indexOf(2), 1);
      }
      if (n === 140) {
        replicas[2] = await startChildGateway(t, env(2));
        live.push(2);
      }
      const events = n % 3 === 0 ? ['video.processing', 'video.completed', 'video.failed'] : [];
      const fail = n % 10 === 7;
      const id = await create(base(live[n % live.length] ?? 0), {
        prompt: fail ? `Storm ${n} [fail]` : `Tiger ${n}`,
        ...(events.length > 0 ? { callbackUrl: `${receiver.url}/hooks`, webhookEvents: events } : {}),
      });
      ids.push(id);
      if (events.length > 0) subscribed.set(id, events);
    }

    const terminal = async (): Promise<boolean> => {
      const { rows } = await schema.pool.query<{ n: string }>(
        "select count(*) as n from videos where status in ('queued', 'processing', 'submitting')",
      );
      const pending = await schema.pool.query<{ n: string }>("select count(*) as n from webhook_deliveries where status != 'delivered'");
      return Number(rows[0]?.n) === 0 && Number(pending.rows[0]?.n) === 0;
    };
    await until(terminal, 'all 200 videos terminal and every delivery delivered', 90_000, 100);

    t.test('every video terminal, each created upstream exactly once', async (t) => {
      const { rows } = await schema.pool.query<{ id: string; status: string }>('select id, status from videos');
      t.equal(rows.length, VIDEOS);
      t.ok(
        rows.every((row) => row.status === 'completed' || row.status === 'failed'),
        'all terminal',
      );
      t.equal(sandbox.stats.creates, VIDEOS, 'exactly 200 upstream creates');
      t.equal(
        createsBy.reduce((a, b) => a + b, 0),
        VIDEOS,
      );
    });

    t.test('no video polled by two replicas within the minimum poll interval', async (t) => {
      const byTask = new Map<string, Query[]>();
      for (const query of queries) byTask.set(query.upstreamId, [...(byTask.get(query.upstreamId) ?? []), query]);
      const violations: string[] = [];
      const pollers = new Set<number>();
      for (const [upstreamId, list] of byTask) {
        for (let i = 1; i < list.length; i += 1) {
          const previous = list[i - 1];
          const current = list[i];
          if (previous === undefined || current === undefined) continue;
          pollers.add(current.replica);
          // ±10 % jitter on the schedule, a few ms of processing.
          if (previous.replica !== current.replica && current.at - previous.at < POLL_MIN_MS * 0.85) {
            violations.push(`${upstreamId}: r${previous.replica} then r${current.replica} after ${current.at - previous.at} ms`);
          }
        }
      }
      t.same(violations, [], `${queries.length} queries`);
      t.ok(pollers.size >= 2, 'the polling was shared by several replicas');
    });

    t.test('every subscribed event delivered at least once, verified, with a stable webhook-id', async (t) => {
      const verifier = new Webhook(webhookSecrets.alice);
      const idsOf = new Map<string, Set<string>>();
      for (const hook of receiver.requests) {
        const headers = flatHeaders(hook.headers);
        const event = verifier.verify(hook.body, headers) as WebhookEvent;
        const key = `${event.data.id} ${event.type}`;
        idsOf.set(key, (idsOf.get(key) ?? new Set()).add(headers['webhook-id'] ?? ''));
      }
      const { rows } = await schema.pool.query<{ id: string; status: string }>('select id, status from videos');
      const statusOf = new Map(rows.map((row) => [row.id, row.status]));
      const missing: string[] = [];
      for (const [videoId, events] of subscribed) {
        const terminalEvent = statusOf.get(videoId) === 'completed' ? 'video.completed' : 'video.failed';
        if (!events.includes(terminalEvent) || idsOf.get(`${videoId} ${terminalEvent}`)?.size !== 1)
          missing.push(`${videoId} ${terminalEvent}`);
      }
      t.same(missing, [], `${subscribed.size} subscribed videos: each terminal event delivered under one webhook-id`);
      t.ok(
        [...idsOf.values()].every((set) => set.size === 1),
        'no event was sent under two ids',
      );
    });

    t.test('a long-poll and an SSE stream on B answer promptly after a completion polled by A', async (t) => {
      const prompt = 'Watched across replicas';
      const id = await create(base(0), { prompt });
      await until(() => upstreamIdByPrompt.has(prompt), 'the watched video created upstream');
      const upstreamId = upstreamIdByPrompt.get(prompt) ?? '';
      sandbox.setTaskState(upstreamId, { state: 'dreaming' });
      await until(async () => /"processing"/.test((await getVideo(base(1), id)).body), 'the video processing', 10_000);
      // From now on B and C keep hearing "processing": only A can see the completion.
      frozen.set(upstreamId, { for: new Set([1, 2]), body: lastBody.get(upstreamId) ?? '' });

      const longPoll = (async () => {
        const answer = await getVideo(base(1), id, '?wait=30');
        return { ...answer, at: Date.now() };
      })();
      const sse = await request(`${base(1)}/videos/${id}/events`, { headers: alice });
      t.equal(sse.statusCode, 200);
      let sseText = '';
      let sseCompletedAt = 0;
      sse.body.setEncoding('utf8');
      sse.body.on('data', (chunk: string) => {
        sseText += chunk;
        if (sseCompletedAt === 0 && /"status":"completed"/.test(sseText)) sseCompletedAt = Date.now();
      });
      // The long-poll is held (the first block of the stream has arrived).
      await until(() => sseText.length > 0, 'the stream open');

      sandbox.setTaskState(upstreamId, null);
      sandbox.completeNow(upstreamId);
      await until(() => completedAnsweredAt.has(upstreamId), 'a replica polled the completion', 10_000);
      const polled = completedAnsweredAt.get(upstreamId);
      t.equal(polled?.replica, 0, 'replica A polled the completion');
      const woken = await longPoll;
      t.equal(woken.status, 200);
      t.match(woken.body, /"status":"completed"/, 'the long-poll on B answers with the completed video');
      t.ok(woken.at - (polled?.at ?? 0) < 1_000, `long-poll on B answered ${woken.at - (polled?.at ?? 0)} ms after A's poll`);
      await until(() => sseCompletedAt > 0, 'the SSE stream on B tells the completion', 5_000);
      t.ok(sseCompletedAt - (polled?.at ?? 0) < 1_000, `SSE on B told it ${sseCompletedAt - (polled?.at ?? 0)} ms after A's poll`);
      sse.body.destroy();

      // B has the finished body cached; a change through A (a delete) must never be answered with it by B.
      t.equal((await getVideo(base(1), id)).status, 200);
      const deleted = await request(`${base(0)}/videos/${id}`, { method: 'DELETE', headers: alice });
      await deleted.body.dump();
      t.ok(deleted.statusCode < 300, `deleted through A (${deleted.statusCode})`);
      const afterwards = await getVideo(base(1), id);
      t.not(afterwards.status, 200, `B never answers the deleted video's old body (${afterwards.status})`);
    });

    t.test(`a limit of ${BOB_PER_MINUTE}/min holds across the three replicas within 10 %`, async (t) => {
      const bob = { authorization: `Bearer ${clientKeys.bob}` };
      let allowed = 0;
      let limited = 0;
      for (let n = 0; n < BOB_PER_MINUTE * 2; n += 1) {
        const response = await request(`${base(n % 3)}/videos?limit=1`, { headers: bob });
        await response.body.dump();
        if (response.statusCode === 200) allowed += 1;
        else if (response.statusCode === 429) limited += 1;
      }
      t.ok(Math.abs(allowed - BOB_PER_MINUTE) <= BOB_PER_MINUTE * 0.1, `${allowed} allowed of ${BOB_PER_MINUTE * 2}`);
      t.equal(allowed + limited, BOB_PER_MINUTE * 2, 'every other request a 429, never an error');
    });
  });
}
