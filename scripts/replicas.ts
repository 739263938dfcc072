/*
 * `npm run replicas`: three gateways on one machine, sharing one Postgres database (and Redis when REDIS_URL is set),
 * on ports 3001, 3002 and 3003 (REPLICAS_BASE_PORT moves them). The same entry point `npm start` runs; each child's
 * output is prefixed with its name. Ctrl-C stops all three (SIGTERM: each drains its work and exits).
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379 npm run replicas
 *
 * Without GATEWAY_SECRET one is generated for this run and given to all three (stream tokens must verify on any
 * replica). Without ELKAPI_API_KEY this script runs ONE sandbox simulator and points the three replicas at it
 * (a simulator inside each replica would know only the videos created there, unlike the real, shared ElkAPI).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { type Sandbox, startSandbox } from '../src/sandbox/simulator.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const databaseUrl = process.env['DATABASE_URL'] ?? '';
if (!/^postgres(?:ql)?:\/\//.test(databaseUrl)) {
  process.stderr.write('npm run replicas: set DATABASE_URL=postgres://… (replicas share one Postgres; SQLite is one process)\n');
  process.exit(1);
}
const basePort = Number(process.env['REPLICAS_BASE_PORT'] ?? '3001');
if (!Number.isInteger(basePort) || basePort < 1 || basePort > 65_533) {
  process.stderr.write('npm run replicas: REPLICAS_BASE_PORT must be a port number\n');
  process.exit(1);
}
const gatewaySecret = process.env['GATEWAY_SECRET'] ?? randomBytes(32).toString('hex');
const upstream: NodeJS.ProcessEnv = {};
let sandbox: Sandbox | null = null;
if ((process.env['ELKAPI_API_KEY'] ?? '') === '') {
  const apiKey = `sandbox-${randomBytes(8).toString('hex')}`;
  sandbox = await startSandbox({ apiKey, durationMs: 10_000, queueMs: 2_000, assetBaseUrl: `http://127.0.0.1:${basePort}/sandbox/assets` });
  upstream['ELKAPI_API_KEY'] = apiKey;
  upstream['ELKAPI_BASE_URL'] = sandbox.url;
  process.stdout.write(`[replicas] one shared sandbox upstream at ${sandbox.url}\n`);
}

function run(command: string[], env: NodeJS.ProcessEnv, name: string): ChildProcess {
  const child = spawn(process.execPath, command, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const prefix = (chunk: Buffer): string =>
    chunk
      .toString('utf8')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => `[${name}] ${line}\n`)
      .join('');
  child.stdout?.on('data', (chunk: Buffer) => process.stdout.write(prefix(chunk)));
  child.stderr?.on('data', (chunk: Buffer) => process.stderr.write(prefix(chunk)));
  return child;
}

// Migrate once up front (each replica would also do it under the advisory lock; this makes a failure obvious).
const migrate = run(['--import', 'tsx', join(root, 'scripts/migrate.ts')], process.env, 'migrate');
const migrated = await new Promise<number | null>((resolve) => migrate.once('exit', resolve));
if (migrated !== 0) process.exit(migrated ?? 1);

const children = [0, 1, 2].map((index) =>
  run(
    ['--import', 'tsx', join(root, 'src/server.ts')],
    { ...process.env, ...upstream, PORT: String(basePort + index), GATEWAY_SECRET: gatewaySecret },
    `replica-${index + 1}`,
  ),
);
let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
let running = children.length;
let worst = 0;
for (const child of children) {
  child.once('exit', (code) => {
    worst = Math.max(worst, code ?? 1);
    running -= 1;
    if (!stopping) {
      process.stderr.write('npm run replicas: a replica exited; stopping the others\n');
      stop();
    }
    if (running === 0) void (sandbox?.close() ?? Promise.resolve()).finally(() => process.exit(worst));
  });
}
