// Slow-body measurement (issue 13 item 3), real sockets against the real entry point (`src/server.ts`) in a child
// process: (1) how long one unauthenticated connection trickling a 65 KB body stays open, (2) the same with a
// valid key, (3) with the gateway limited to SLOW_FD_LIMIT descriptors, whether a legitimate client still gets an
// answer while SLOW_CONNECTIONS unauthenticated tricklers are open. Prints one JSON line per figure.
// Run: `npx tsx bench/slow-bodies.ts` (env SLOW_CAP_S, SLOW_FD_LIMIT, SLOW_CONNECTIONS, plus any gateway variable).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const capMs = Number(process.env['SLOW_CAP_S'] ?? 40) * 1000;
const fdLimit = Number(process.env['SLOW_FD_LIMIT'] ?? 256);
const connections = Number(process.env['SLOW_CONNECTIONS'] ?? 400);
const key = 'vgk_bench_slow_bodies_0123456789abcdef';

async function startGateway(limitFds: boolean): Promise<{ port: number; stop: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'slow-bodies-'));
  const clientsFile = join(dir, 'clients.json');
  const apiKeySha256 = createHash('sha256').update(key).digest('hex');
  writeFileSync(
    clientsFile,
    JSON.stringify({ clients: [{ id: 'bench', name: 'Bench', apiKeySha256, webhookSecret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' }] }),
  );
  const command = `${limitFds ? `ulimit -n ${fdLimit} && ` : ''}exec "${process.execPath}" --import tsx src/server.ts`;
  const child = spawn('bash', ['-c', command], {
    cwd: root,
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      CLIENTS_FILE: clientsFile,
      DATABASE_URL: `sqlite:${join(dir, 'gateway.db')}`,
      ELKAPI_API_KEY: 'elk-bench-not-used',
      ELKAPI_BASE_URL: 'http://127.0.0.1:9',
      LOG_LEVEL: 'silent',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const match = /listening on http:\/\/[^:]+:(\d+)/.exec(out);
      if (match !== null) resolve(Number(match[1]));
    });
    child.once('exit', () => reject(new Error(`gateway exited:\n${out}`)));
  });
  return { port, stop: () => child.kill('SIGKILL') };
}

/** Opens a POST /videos announcing 65,000 bytes and sends one byte every `everyMs`; resolves with how long it stayed open. */
function trickle(port: number, authorization: string | null, everyMs: number): { opened: Promise<void>; closedAfterMs: Promise<number> } {
  const started = Date.now();
  const socket: Socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  socket.on('data', () => undefined);
  const opened = new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const closedAfterMs = new Promise<number>((resolve) => {
    const timer = setInterval(() => {
      if (!socket.destroyed && socket.writable) socket.write('x');
    }, everyMs);
    const cap = setTimeout(() => socket.destroy(), capMs);
    socket.once('close', () => {
      clearInterval(timer);
      clearTimeout(cap);
      resolve(Date.now() - started);
    });
  });
  void opened.then(() =>
    socket.write(
      'POST /videos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 65000\r\n' +
        `${authorization === null ? '' : `Authorization: ${authorization}\r\n`}\r\n{`,
    ),
  );
  return { opened, closedAfterMs };
}

async function legitimateAnswer(port: number): Promise<string> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/videos?limit=1`, {
      headers: { authorization: `Bearer ${key}` },
      signal: AbortSignal.timeout(10_000),
    });
    return String(response.status);
  } catch (error) {
    return error instanceof Error ? `${error.name}: ${(error.cause as Error | undefined)?.message ?? error.message}` : String(error);
  }
}

const capNote = (ms: number): string => (ms >= capMs - 50 ? `still open at the ${capMs / 1000} s cap` : 'closed by the gateway');

const plain = await startGateway(false);
const [unauthenticated, authenticated] = await Promise.all([
  trickle(plain.port, null, 1000).closedAfterMs,
  trickle(plain.port, `Bearer ${key}`, 1000).closedAfterMs,
]);
plain.stop();
console.log(JSON.stringify({ figure: 'unauthenticated trickler open', ms: unauthenticated, note: capNote(unauthenticated) }));
console.log(JSON.stringify({ figure: 'authenticated trickler open', ms: authenticated, note: capNote(authenticated) }));

const limited = await startGateway(true);
const tricklers = Array.from({ length: connections }, () => trickle(limited.port, null, 2000));
await Promise.all(tricklers.map((item) => Promise.race([item.opened, item.closedAfterMs])));
// Give the gateway a moment to accept (or answer and close) what it can.
await new Promise((resolve) => setTimeout(resolve, 2000));
const answer = await legitimateAnswer(limited.port);
limited.stop();
console.log(JSON.stringify({ figure: 'legitimate client while tricklers are open', fdLimit, tricklers: connections, answer }));
process.exit(0);
