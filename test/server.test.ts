import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import t from 'tap';
import { request } from 'undici';

const root = fileURLToPath(new URL('..', import.meta.url));
const serverEntry = join(root, 'src/server.ts');
const baseEnv = { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '' };

t.test('invalid configuration prints one line per problem and exits 1 before listening', async (t) => {
  const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', serverEntry],
      {
        cwd: t.testdir(),
        env: {
          ...baseEnv,
          PORT: 'eighty',
          POLL_INTERVAL_MIN_MS: 'soon',
          WEBHOOK_RETRY_SCHEDULE: '5,10',
          ELKAPI_API_KEY: 'sk-never-print-me',
        },
      },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : ((error as { code?: number }).code ?? null), stdout, stderr }),
    );
  });
  t.equal(result.code, 1);
  const lines = result.stderr.trim().split('\n');
  for (const variable of ['PORT', 'POLL_INTERVAL_MIN_MS', 'WEBHOOK_RETRY_SCHEDULE']) {
    t.equal(lines.filter((line) => line.includes(variable)).length, 1, `one line names ${variable}`);
  }
  t.notMatch(result.stdout + result.stderr, /listening/);
  t.notMatch(result.stdout + result.stderr, /sk-never-print-me/);
});

t.test('npm start path: sandbox mode without a key, banner, first-start client, a video to completion', async (t) => {
  const cwd = t.testdir();
  const child = spawn(process.execPath, ['--import', 'tsx', serverEntry], {
    cwd,
    env: {
      ...baseEnv,
      PORT: '0',
      LOG_LEVEL: 'warn',
      SANDBOX_DURATION_MS: '300ms',
      SANDBOX_QUEUE_MS: '100ms',
      POLL_INTERVAL_MIN_MS: '50ms',
      POLL_INTERVAL_MAX_MS: '100ms',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  let output = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => (output += chunk));
  while (!/listening on (http:\/\/\S+)/.test(output)) {
    await Promise.race([once(child.stdout, 'data'), once(child, 'exit').then(() => Promise.reject(new Error(`exited: ${output}`)))]);
  }
  const base = /listening on (http:\/\/\S+)/.exec(output)?.[1] ?? '';
  t.match(output, /SANDBOX MODE/);
  const key = /API key:\s+(vgk_\S+)/.exec(output)?.[1] ?? '';
  t.match(key, /^vgk_/, 'the first start prints the default client key once');

  const created = await request(`${base}/videos`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'A tiger walking in snow' }),
  });
  t.equal(created.statusCode, 202);
  const { id } = (await created.body.json()) as { id: string };

  // Long-poll: each read answers as soon as the status changes, so no client-side sleeping.
  let status = 'queued';
  for (let attempt = 0; attempt < 5 && status !== 'completed'; attempt++) {
    const read = await request(`${base}/videos/${id}?wait=10`, { headers: { authorization: `Bearer ${key}` } });
    status = ((await read.body.json()) as { status: string }).status;
  }
  t.equal(status, 'completed', 'the video completes against the built-in simulator');

  child.kill('SIGTERM');
  const [code] = (await once(child, 'exit')) as [number | null];
  t.equal(code, 0, 'SIGTERM shuts down cleanly');
});
