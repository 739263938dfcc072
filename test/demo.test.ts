/**
 * `npm run demo` as a newcomer runs it: a real child process (npm, tsx, the gateway, the receiver, SSE), which must
 * exit 0 having printed the whole story of one video.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

import t from 'tap';

const root = fileURLToPath(new URL('..', import.meta.url));
// A cold tsx start plus a ~5 s sandbox render, on a loaded machine: above tap's 60 s default per file.
t.setTimeout(120_000);

t.test('npm run demo: one video from prompt to verified webhook, exit 0', async (t) => {
  t.setTimeout(120_000);
  const child = spawn('npm', ['run', '--silent', 'demo'], {
    cwd: root,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const [code] = (await once(child, 'exit')) as [number | null];
  t.equal(code, 0, `exit 0; output:\n${output}`);

  t.match(output, /^Sandbox gateway on http:\/\/127\.0\.0\.1:\d+ \(Swagger UI: http:\/\/127\.0\.0\.1:\d+\/docs\)/m);
  t.match(output, /^Webhook receiver on http:\/\/127\.0\.0\.1:\d+\/webhooks\/videos$/m);
  const id = /^Created (vid_[0-9A-Za-z]+) \(queued\): POST \/videos answered 202$/m.exec(output)?.[1];
  t.ok(id, 'the created video is named');
  t.match(output, /^\[#*\.*\] +\d+% queued$/m, 'the bar shows the queued state');
  t.match(output, /^\[#{30}\] 100% completed$/m, 'the bar ends full at completed');
  t.match(output, new RegExp(`^Webhook verified: video\\.completed for ${id ?? 'vid_?'} \\(webhook-id msg_[0-9A-Za-z]+, `, 'm'));
  t.match(output, /^Playable URL: http:\/\/127\.0\.0\.1:\d+\/sandbox\/assets\/sample\.mp4$/m);
  t.match(output, /^Demo finished\.$/m);
  t.notMatch(output, /warning|REJECTED|failed/i, 'no warnings, no rejected webhook');
  t.notMatch(output, /vgk_|whsec_|vst_/, 'no key, secret or token printed');
});
