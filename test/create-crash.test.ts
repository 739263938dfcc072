/**
 * A paid generation is never lost nor bought twice (issue 13 item 2). The gateway runs as a real child process in
 * front of a scripted upstream on 127.0.0.1; the upstream accepts the create (the generation now exists and is
 * paid for), starts its answer and tells the test, which SIGKILLs the gateway before that answer can be used. The
 * gateway restarts on the same database file and the client retries with the same Idempotency-Key.
 */
import { join } from 'node:path';

import BetterSqlite3 from 'better-sqlite3';
import t from 'tap';
import { request } from 'undici';

import type { Video } from '../schemas/video.js';
import { startChildGateway, writeClientsFile } from './helpers/child-gateway.js';
import { clientKeys } from './helpers/gateway.js';
import { startScriptedServer } from './helpers/scripted-server.js';
import { until } from './helpers/until.js';

t.setTimeout(120_000);

const upstreamKey = 'elk-create-crash-key';
const createPath = '/dream-machine/v1/generations';

t.test('SIGKILL right after the upstream accepted a create: the retry gets the one video, never a second generation', async (t) => {
  const dir = t.testdir();
  const databasePath = join(dir, 'gateway.db');
  const upstream = await startScriptedServer();
  t.teardown(() => upstream.close());
  // Every create is accepted; the answer's head and half its body go out, the rest never does.
  let accepted = 0;
  upstream.respond((recorded, response) => {
    if (recorded.method !== 'POST' || !recorded.url.startsWith(createPath)) {
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end('{"detail":"task_not_exist"}');
      return;
    }
    accepted += 1;
    const body = JSON.stringify({ id: `7ca76429-99d1-46ab-bb2e-84baa4acdb0${accepted}`, state: 'queued', failure_reason: null });
    response.writeHead(201, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
    response.write(body.slice(0, 20));
  });

  const env = {
    DATABASE_URL: `sqlite:${databasePath}`,
    CLIENTS_FILE: writeClientsFile(dir),
    ELKAPI_API_KEY: upstreamKey,
    ELKAPI_BASE_URL: upstream.url,
    LOG_LEVEL: 'info',
    UPSTREAM_MAX_RPS: '1000',
  };
  const body = JSON.stringify({ prompt: 'A tiger walking in snow' });
  const create = (base: string) =>
    request(`${base}/videos`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${clientKeys.alice}`,
        'content-type': 'application/json',
        'idempotency-key': 'order-4711',
      },
      body,
    });

  const first = await startChildGateway(t, env);
  const inFlight = create(first.url).catch((error: unknown) => error);
  await until(() => accepted === 1, 'the upstream accepted the create', 30_000);
  first.process.kill('SIGKILL');
  t.same(await first.exited, { code: null, signal: 'SIGKILL' });
  t.ok((await inFlight) instanceof Error, 'the client lost its connection: it will retry');

  const second = await startChildGateway(t, env);
  // Right after the restart the first request's fate is not settled yet: the key says so, nothing is bought.
  const early = await create(second.url);
  t.equal(early.statusCode, 409, 'the key is still in use');
  t.equal(((await early.body.json()) as { code: string }).code, 'idempotency_key_in_use');
  t.ok(early.headers['retry-after'], 'with a retry-after');
  t.equal(accepted, 1, 'no second upstream create');

  // The create deadline passes (the rows are aged instead of waiting a minute of real time).
  const db = new BetterSqlite3(databasePath);
  t.teardown(() => db.close());
  db.prepare('update idempotency_keys set created_at = created_at - 120000').run();
  db.prepare('update videos set created_at = created_at - 120000, updated_at = updated_at - 120000').run();

  const retried = await create(second.url);
  const retriedBody = await retried.body.text();
  t.equal(retried.statusCode, 202, `the retry answers the one video: ${retriedBody}`);
  t.equal(retried.headers['idempotent-replayed'], 'true', 'as the answer of the first request');
  const video = JSON.parse(retriedBody) as Video;
  t.equal(video.status, 'failed');
  t.equal(video.failure?.code, 'submit_interrupted');
  t.match(video.failure?.message, /upstream may have started a generation/);
  t.equal(accepted, 1, 'exactly one upstream create for the one intent');

  const again = await create(second.url);
  t.equal(again.statusCode, 202);
  t.equal(await again.body.text(), retriedBody, 'every later retry replays the same bytes');
  t.equal(accepted, 1, 'still one upstream create');

  const read = await request(`${second.url}/videos/${video.id}`, { headers: { authorization: `Bearer ${clientKeys.alice}` } });
  t.equal(read.statusCode, 200);
  t.equal(((await read.body.json()) as Video).status, 'failed', 'GET shows the same failed video');
  const rows = db.prepare('select id, status from videos').all();
  t.same(rows, [{ id: video.id, status: 'failed' }], 'one video row for the one intent');
});
