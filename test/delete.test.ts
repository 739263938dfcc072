import BetterSqlite3 from 'better-sqlite3';
import t, { type Test } from 'tap';
import { request } from 'undici';

import type { VideoList } from '../schemas/list.js';
import type { Problem } from '../schemas/problem.js';
import type { Video } from '../schemas/video.js';
import { auth, createVideo, startTestGateway, type TestGateway, upstreamIdOf } from './helpers/gateway.js';
import { ManualClock, ManualTimers } from './helpers/manual-time.js';
import { type ScriptedServer, sendText, startScriptedServer } from './helpers/scripted-server.js';
import { until } from './helpers/until.js';

/*
 * DELETE /videos/{id} (DESIGN §2.4) through the real HTTP stack, a real SQLite file, a real sandbox upstream and a
 * real webhook receiver; long-poll and keep-alive timers are driven by hand.
 */

async function deleteGateway(t: Test): Promise<TestGateway & { timers: ManualTimers }> {
  const clock = new ManualClock(Date.parse('2026-11-29T12:00:00.000Z'));
  const timers = new ManualTimers(clock);
  const gw = await startTestGateway(t, {
    clock,
    env: { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true', WEBHOOK_RETRY_SCHEDULE: '5s,5m' },
    gateway: { timers },
  });
  return { ...gw, timers };
}

async function receiver(t: Test, status: number): Promise<ScriptedServer> {
  const server = await startScriptedServer();
  server.respond((_request, response) => sendText(response, status, `receiver says ${status}`));
  t.teardown(() => server.close());
  return server;
}

async function completeViaPoller(gw: TestGateway, videoId: string): Promise<void> {
  gw.sandbox.completeNow(await upstreamIdOf(gw, videoId));
  gw.clock.advance(2_000);
  await gw.poller.tick();
}

const del = (gw: TestGateway, id: string, who: 'alice' | 'bob' = 'alice') =>
  gw.app.inject({ method: 'DELETE', url: `/videos/${id}`, headers: auth(who) });

/** Every row of every table of the gateway's SQLite file, as an operator would read it. */
function dumpDatabase(gw: TestGateway): Record<string, string> {
  const path = gw.config.sqlitePath;
  if (path === null) throw new Error('this test reads the SQLite file; the gateway runs on Postgres');
  const db = new BetterSqlite3(path, { readonly: true });
  try {
    const tables = db.prepare("select name from sqlite_master where type = 'table'").all() as Array<{ name: string }>;
    return Object.fromEntries(tables.map(({ name }) => [name, JSON.stringify(db.prepare(`select * from "${name}"`).all())]));
  } finally {
    db.close();
  }
}

t.test('DELETE erases the content from every table and answers 404 on every route afterwards', async (t) => {
  const gw = await deleteGateway(t);
  const hooks = await receiver(t, 500);
  const body = {
    prompt: 'A private prompt about a red lighthouse',
    metadata: { user: 'secret-user-42' },
    callbackUrl: `${hooks.url}/hooks/private-path`,
    keyframes: { start: { imageUrl: 'https://img.private.example/k.jpg' } },
  };
  const headers = { ...auth(), 'idempotency-key': 'erase-me-1' };
  const created = await gw.app.inject({ method: 'POST', url: '/videos', headers, payload: body });
  t.equal(created.statusCode, 202);
  const { id } = created.json<Video>();
  await completeViaPoller(gw, id);
  t.equal(await gw.dispatcher.tick(), 1, 'the webhook was attempted once');
  t.equal(hooks.requests.length, 1);

  const read = await gw.app.inject({ method: 'GET', url: `/videos/${id}`, headers: auth() });
  t.equal(read.statusCode, 200, 'read (and cached) before the delete');
  const video = read.json<Video>();
  t.equal(video.webhook?.status, 'retrying', 'a retry is pending');
  const content = [
    body.prompt,
    'secret-user-42',
    'private-path',
    'img.private.example',
    video.result?.video.url ?? 'no result',
    video.result?.video.downloadUrl ?? 'no result',
    video.result?.thumbnail?.url ?? 'no thumbnail',
    'receiver says 500',
  ];
  const before = dumpDatabase(gw);
  for (const text of content) {
    t.ok(
      Object.values(before).some((rows) => rows.includes(text)),
      `the check can fail: "${text}" is stored before the delete`,
    );
  }

  const deleted = await del(gw, id);
  t.equal(deleted.statusCode, 204);
  t.equal(deleted.body, '', 'no body');

  const after = dumpDatabase(gw);
  t.ok('video_tombstones' in after, 'the tombstone table exists');
  for (const [table, rows] of Object.entries(after)) {
    for (const text of content) t.notOk(rows.includes(text), `${table} holds nothing of "${text}"`);
  }
  const tombstones = JSON.parse(after['video_tombstones'] ?? '[]') as Array<Record<string, unknown>>;
  t.match(tombstones, [{ id, client_id: 'alice', reason: 'deleted', deleted_at: gw.clock.now() }]);
  t.same(Object.keys(tombstones[0] ?? {}).sort(), [
    'client_id',
    'completed_at',
    'created_at',
    'deleted_at',
    'id',
    'reason',
    'updated_at',
    'version',
  ]);

  const routes = [
    { method: 'GET', url: `/videos/${id}` },
    { method: 'GET', url: `/videos/${id}?wait=5` },
    { method: 'GET', url: `/videos/${id}/events` },
    { method: 'GET', url: `/videos/${id}/deliveries` },
    { method: 'POST', url: `/videos/${id}/deliveries/redeliver` },
    { method: 'DELETE', url: `/videos/${id}` },
  ] as const;
  for (const route of routes) {
    const response = await gw.app.inject({ ...route, headers: auth() });
    t.equal(response.statusCode, 404, `${route.method} ${route.url} → 404`);
    t.match(response.json<Problem>(), { code: 'not_found', status: 404 });
  }
  const list = await gw.app.inject({ method: 'GET', url: '/videos', headers: auth() });
  t.notOk(
    list.json<VideoList>().data.some((listed) => listed.id === id),
    'not listed',
  );

  const replay = await gw.app.inject({ method: 'POST', url: '/videos', headers, payload: body });
  t.equal(replay.statusCode, 404, 'replaying its Idempotency-Key: 404, not the stored body');
  t.match(replay.json<Problem>(), { code: 'not_found', detail: /deleted/ });
  t.notOk(replay.body.includes(body.prompt));
  t.notOk(replay.headers['idempotent-replayed']);
  const reuse = await gw.app.inject({ method: 'POST', url: '/videos', headers, payload: { prompt: 'Another body altogether' } });
  t.equal(reuse.statusCode, 404, 'the key answers 404 whatever the body: its fingerprint is gone too');
  t.equal(gw.sandbox.stats.creates, 1, 'no second generation was started');

  gw.clock.advance(10 * 60_000);
  t.equal(await gw.dispatcher.tick(), 0, 'the pending retry was dropped');
  t.equal(hooks.requests.length, 1, 'the receiver heard nothing more');
});

t.test('a webhook pending for a deleted video is never sent', async (t) => {
  const gw = await deleteGateway(t);
  const hooks = await receiver(t, 204);
  const created = await createVideo(gw, { prompt: 'Finished but never told', callbackUrl: `${hooks.url}/in` });
  await completeViaPoller(gw, created.id);
  const outbox = await gw.store.deliveries.claimDue(gw.clock.now(), { limit: 10, leaseMs: 1 });
  t.equal(outbox.length, 1, 'its video.completed event was pending');
  gw.clock.advance(1);

  t.equal((await del(gw, created.id)).statusCode, 204);
  gw.clock.advance(60_000);
  t.equal(await gw.dispatcher.tick(), 0, 'nothing to send');
  t.same(hooks.requests, [], 'the real receiver saw nothing');
});

t.test('deleting a running video stops tracking it, answers long-polls with 404 and ends streams with `deleted`', async (t) => {
  const gw = await deleteGateway(t);
  const created = await createVideo(gw, { prompt: 'Still dreaming' });
  const upstreamId = await upstreamIdOf(gw, created.id);
  const base = await gw.app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => gw.app.close());

  const longPoll = gw.app.inject({ method: 'GET', url: `/videos/${created.id}?wait=60`, headers: auth() });
  const stream = await request(`${base}/videos/${created.id}/events`, { headers: auth() });
  t.equal(stream.statusCode, 200);
  await until(() => gw.bus.listenerCount(created.id) === 2, 'the long-poll and the stream subscribed');

  t.equal((await del(gw, created.id)).statusCode, 204);

  const answer = await longPoll;
  t.equal(answer.statusCode, 404, 'the long-poll answers 404 at once');
  t.match(answer.json<Problem>(), { code: 'not_found' });
  const events = await stream.body.text();
  const blocks = events.split('\n\n').filter((block) => block !== '');
  t.match(blocks[0], /^event: status\n/, 'the stream began with the state');
  t.equal(blocks.at(-1), `event: deleted\nid: ${gw.clock.now()}\ndata: {"id":"${created.id}"}`, 'and ended with `deleted`');
  t.equal(gw.bus.listenerCount(created.id), 0, 'no listener left');
  t.equal(gw.timers.pending(), 0, 'no long-poll or keep-alive timer left');

  const queries = gw.sandbox.stats.queriesById.get(upstreamId) ?? 0;
  for (let step = 0; step < 30; step++) {
    gw.clock.advance(15_000);
    await gw.poller.tick();
  }
  t.equal(gw.sandbox.stats.queriesById.get(upstreamId) ?? 0, queries, 'never polled again');
});

t.test('a caller deletes only its own videos', async (t) => {
  const gw = await deleteGateway(t);
  const created = await createVideo(gw, { prompt: 'Alice owns this' });
  const asBob = await del(gw, created.id, 'bob');
  t.equal(asBob.statusCode, 404, "another client's video is not found");
  t.equal((await gw.app.inject({ method: 'GET', url: `/videos/${created.id}`, headers: auth() })).statusCode, 200, 'and is kept');
  const anonymous = await gw.app.inject({ method: 'DELETE', url: `/videos/${created.id}` });
  t.equal(anonymous.statusCode, 401);
  const unknown = await del(gw, 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC');
  t.equal(unknown.statusCode, 404);
  const malformed = await del(gw, 'not-an-id');
  t.equal(malformed.statusCode, 404, 'a malformed id is not found, as on GET');
  t.equal((await del(gw, created.id)).statusCode, 204);
});
