// Child processes of the bench: whatever is measured and whatever loads it each run in their own process.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';

export interface RunningProcess {
  readonly name: string;
  readonly pid: number;
  /** Everything the process wrote to stdout so far. */
  stdout(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  name: string;
  command: string;
  args: readonly string[];
  /** Added to (and overriding) this process's environment; `undefined` removes a variable. */
  env?: Record<string, string | undefined>;
  /** Resolves once stdout matches; the match is returned. */
  ready: RegExp;
  readyTimeoutMs?: number;
}

const running = new Set<RunningProcess>();

function childEnv(overrides: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [name, value] of Object.entries(overrides)) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return env;
}

function wrap(name: string, child: ChildProcess): RunningProcess {
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
    // Keep a few kB: enough to say why a child died.
    if (err.length > 8192) err = err.slice(-8192);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  if (child.pid === undefined) throw new Error(`${name}: could not start`);
  const handle: RunningProcess = {
    name,
    pid: child.pid,
    stdout: () => out,
    exited,
    async stop(graceMs = 10_000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      running.delete(handle);
    },
  };
  running.add(handle);
  void exited.then((code) => {
    if (running.has(handle) && code !== 0) process.stderr.write(`[${name}] exited with ${code}\n${err}`);
  });
  return handle;
}

export async function startProcess(options: StartOptions): Promise<{ process: RunningProcess; match: RegExpExecArray }> {
  const child = spawn(options.command, [...options.args], { env: childEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'] });
  const handle = wrap(options.name, child);
  const timeoutMs = options.readyTimeoutMs ?? 30_000;
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${options.name}: not ready within ${timeoutMs} ms`)), timeoutMs);
    const check = (): void => {
      const found = options.ready.exec(handle.stdout());
      if (found === null) return;
      clearTimeout(timer);
      child.stdout?.off('data', check);
      resolve(found);
    };
    child.stdout?.on('data', check);
    void handle.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${options.name}: exited (${code}) before it was ready`));
    });
  });
  return { process: handle, match };
}

/** Runs a command to its end; rejects when it exits non-zero. */
export async function runToEnd(
  name: string,
  command: string,
  args: readonly string[],
  env?: Record<string, string | undefined>,
): Promise<string> {
  const child = spawn(command, [...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  const handle = wrap(name, child);
  const code = await handle.exited;
  running.delete(handle);
  if (code !== 0) throw new Error(`${name} exited with ${code}`);
  return handle.stdout();
}

/** Runs a bench script (TypeScript, through tsx) as its own Node process. */
export const tsxArgs = (script: string, nodeArgs: readonly string[] = []): string[] => [...nodeArgs, '--import', 'tsx', script];

/** Stops every child still running (on the way out, also after a failure). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((child) => child.stop(2_000)));
}

/** A port that was free a moment ago (the gateway takes its port from PORT, and its media URLs show it). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('freePort: no address');
  return address.port;
}

export interface MemoryUse {
  /** Resident set now, MiB. */
  rssMiB: number;
  /** Peak resident set since start (VmHWM), MiB. */
  peakMiB: number;
}

/** Read from /proc, i.e. from outside the process. */
export async function memoryOf(pid: number): Promise<MemoryUse> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rssMiB: kib('VmRSS') / 1024, peakMiB: kib('VmHWM') / 1024 };
}

/** The soft limit on open files of a running process. */
export async function openFilesLimitOf(pid: number): Promise<number> {
  const limits = await readFile(`/proc/${pid}/limits`, 'utf8');
  return Number(/^Max open files\s+(\d+)/m.exec(limits)?.[1] ?? Number.NaN);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Established TCP connections whose local port is `port` (the server side of its clients), from /proc/net. */
export async function establishedConnectionsTo(port: number): Promise<number> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let count = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      if (state === '01' && local?.endsWith(`:${hexPort}`)) count += 1;
    }
  }
  return count;
}
