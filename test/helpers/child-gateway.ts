/**
 * The gateway as a real child process (`node --import tsx src/server.ts`), for crash and shutdown tests: the same
 * entry point `npm start` runs, on a database file and clients file the test owns.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Test } from 'tap';

import { testClientsFile } from './gateway.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const serverEntry = join(root, 'src/server.ts');

export interface ChildGateway {
  /** `http://127.0.0.1:<port>` */
  url: string;
  process: ChildProcess;
  /** Everything the child wrote so far (stdout and stderr). */
  output(): string;
  /** Resolves when the child has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Writes the test clients (alice, bob) to `<dir>/clients.json` and returns its path. */
export function writeClientsFile(dir: string): string {
  const file = join(dir, 'clients.json');
  writeFileSync(file, JSON.stringify(testClientsFile));
  return file;
}

export interface ChildGatewayOptions {
  /** Working directory (the default data directory is relative to it). Default: the repository root. */
  cwd?: string;
  startTimeoutMs?: number;
}

/** Spawns the gateway without waiting for it (`url` is empty): for starts that must fail. Killed at teardown if still up. */
export function spawnChildGateway(t: Test, env: Record<string, string>, options: ChildGatewayOptions = {}): ChildGateway {
  const child = spawn(process.execPath, ['--import', 'tsx', serverEntry], {
    cwd: options.cwd ?? root,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', HOST: '127.0.0.1', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { url: '', process: child, output: () => output, exited };
}

const listening = /Video gateway listening on (http:\/\/\S+)/;

/** Starts the gateway and resolves once it prints its listening address. Killed (SIGKILL) at teardown if still up. */
export async function startChildGateway(t: Test, env: Record<string, string>, options: ChildGatewayOptions = {}): Promise<ChildGateway> {
  const startTimeoutMs = options.startTimeoutMs ?? 30_000;
  const gateway = spawnChildGateway(t, env, options);
  const child = gateway.process;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => finish(new Error(`the gateway did not start within ${startTimeoutMs} ms:\n${gateway.output()}`)),
      startTimeoutMs,
    );
    const onData = (): void => {
      if (listening.test(gateway.output())) finish();
    };
    const onExit = (): void => finish(new Error(`the gateway exited before listening:\n${gateway.output()}`));
    function finish(error?: Error): void {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      if (error === undefined) resolve();
      else reject(error);
    }
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
  });
  return { ...gateway, url: listening.exec(gateway.output())?.[1] ?? '' };
}
