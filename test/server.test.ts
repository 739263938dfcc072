import t from 'tap';
import { request } from 'undici';

import type { Video } from '../schemas/video.js';
import { spawnChildGateway, startChildGateway } from './helpers/child-gateway.js';

t.test('invalid configuration prints one line per problem and exits 1 before listening', async (t) => {
  const child = spawnChildGateway(
    t,
    { PORT: 'eighty', POLL_INTERVAL_MIN_MS: 'soon', WEBHOOK_RETRY_SCHEDULE: '5,10', ELKAPI_API_KEY: 'sk-never-print-me' },
    { cwd: t.testdir() },
  );
  const { code } = await child.exited;
  t.equal(code, 1);
  const lines = child.output().trim().split('\n');
  for (const variable of ['PORT', 'POLL_INTERVAL_MIN_MS', 'WEBHOOK_RETRY_SCHEDULE']) {
    t.equal(lines.filter((line) => line.includes(variable)).length, 1, `one line names ${variable}`);
  }
  t.notMatch(child.output(), /listening/);
  t.notMatch(child.output(), /sk-never-print-me/);
});

t.test('npm start path: sandbox mode without a key, banner, first-start client, a video to completion', async (t) => {
  const gateway = await startChildGateway(
    t,
    {
      LOG_LEVEL: 'warn',
      SANDBOX_DURATION_MS: '300ms',
      SANDBOX_QUEUE_MS: '100ms',
      POLL_INTERVAL_MIN_MS: '50ms',
      POLL_INTERVAL_MAX_MS: '100ms',
    },
    // A directory of its own: the first start creates the default client there.
    { cwd: t.testdir() },
  );
  t.match(gateway.output(), /SANDBOX MODE/);
  const key = /API key:\s+(vgk_\S+)/.exec(gateway.output())?.[1] ?? '';
  t.match(key, /^vgk_/, 'the first start prints the default client key once');

  const created = await request(`${gateway.url}/videos`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'A tiger walking in snow' }),
  });
  t.equal(created.statusCode, 202);
  const { id } = (await created.body.json()) as Video;

  // Long-poll: each read answers as soon as the status changes, so no client-side sleeping.
  let status = 'queued';
  for (let attempt = 0; attempt < 5 && status !== 'completed'; attempt++) {
    const read = await request(`${gateway.url}/videos/${id}?wait=10`, { headers: { authorization: `Bearer ${key}` } });
    status = ((await read.body.json()) as Video).status;
  }
  t.equal(status, 'completed', 'the video completes against the built-in simulator');

  gateway.process.kill('SIGTERM');
  t.equal((await gateway.exited).code, 0, 'SIGTERM shuts down cleanly');
});
