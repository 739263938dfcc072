import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';

import t from 'tap';
import { request } from 'undici';

import type { Video } from '../schemas/video.js';
import { spawnChildGateway, startChildGateway, writeClientsFile } from './helpers/child-gateway.js';
import { auth } from './helpers/gateway.js';
import { freshSchema, postgresOrSkip } from './helpers/postgres.js';

/** A port nothing listens on: taken from the OS, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

t.test('a malformed Postgres URL: one line without the password, exit 1, never listening', async (t) => {
  const child = spawnChildGateway(t, { DATABASE_URL: 'postgres://app:s3cret@db:5432/gw/extra' }, { cwd: t.testdir() });
  t.equal((await child.exited).code, 1);
  const lines = child.output().trim().split('\n');
  t.equal(lines.filter((line) => line.includes('DATABASE_URL')).length, 1, 'one line names DATABASE_URL');
  t.notMatch(child.output(), /s3cret/);
  t.notMatch(child.output(), /listening/);
});

t.test('an unreachable Postgres at start: one clear line, exit 1, never listening', async (t) => {
  const port = await closedPort();
  const dir = t.testdir();
  // As replicas on Postgres run (the same GATEWAY_SECRET on each), so only the store's failure is printed.
  const env = {
    DATABASE_URL: `postgres://app:s3cret@127.0.0.1:${port}/gw`,
    CLIENTS_FILE: writeClientsFile(dir),
    GATEWAY_SECRET: randomBytes(32).toString('hex'),
  };
  const child = spawnChildGateway(t, env, { cwd: dir });
  t.equal((await child.exited).code, 1);
  t.match(child.output(), `The gateway could not start: cannot reach the Postgres database at 127.0.0.1:${port}/gw: ECONNREFUSED`);
  t.equal(child.output().trim().split('\n').length, 1, 'one line');
  t.notMatch(child.output(), /s3cret/);
  t.notMatch(child.output(), /listening/);
});

const server = await postgresOrSkip(t);
if (server !== null) {
  t.test('npm start on Postgres: migrates, serves, and keeps the data across a restart', async (t) => {
    const { url } = await freshSchema(t, server);
    const dir = t.testdir();
    const env = { DATABASE_URL: url, CLIENTS_FILE: writeClientsFile(dir), LOG_LEVEL: 'warn', DATABASE_POOL_SIZE: '3' };
    const first = await startChildGateway(t, env, { cwd: dir });
    const created = await request(`${first.url}/videos`, {
      method: 'POST',
      headers: { ...auth(), 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'A lighthouse in a storm' }),
    });
    t.equal(created.statusCode, 202);
    const video = (await created.body.json()) as Video;
    first.process.kill('SIGTERM');
    t.equal((await first.exited).code, 0, 'SIGTERM shuts down cleanly');

    const second = await startChildGateway(t, env, { cwd: dir });
    const read = await request(`${second.url}/videos/${video.id}`, { headers: auth() });
    t.equal(read.statusCode, 200, 'the video outlived the process');
    t.match(await read.body.json(), { id: video.id, prompt: 'A lighthouse in a storm' });
    second.process.kill('SIGTERM');
    t.equal((await second.exited).code, 0);
  });
}
