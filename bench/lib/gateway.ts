// The gateway as users run it: the built `dist/src/server.js` in its own process, with a bench client.
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { freePort, memoryOf, type MemoryUse, type RunningProcess, startProcess } from './processes.js';

export const benchKey = 'vgk_bench_key_0123456789abcdefghijklmnopqrstuvwxyz';
export const benchKeySha256 = createHash('sha256').update(benchKey).digest('hex');
export const benchWebhookSecret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
export const authHeaders = { authorization: `Bearer ${benchKey}` } as const;
export const jsonHeaders = { ...authHeaders, 'content-type': 'application/json' } as const;

export interface GatewayProcess {
  readonly url: string;
  readonly pid: number;
  /** The SQLite file, for figures the gateway exposes no metric for (read-only). */
  readonly dbPath: string;
  readonly process: RunningProcess;
  memory(): Promise<MemoryUse>;
  metrics(): Promise<PrometheusText>;
  /** Stops the process; removes its files unless `keepDatabase`. */
  stop(): Promise<void>;
  removeDatabase(): Promise<void>;
}

export interface GatewayOptions {
  name: string;
  /** Config on top of the bench defaults (sandbox mode, warn logs, a fresh database). */
  env?: Record<string, string | undefined>;
  /** e.g. `--cpu-prof`. */
  nodeArgs?: readonly string[];
  /** Leave the database after `stop()` (for a second gateway on the same data); `removeDatabase()` later. */
  keepDatabase?: boolean;
}

export async function startGateway(options: GatewayOptions): Promise<GatewayProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'gateway-bench-'));
  const clientsFile = join(dir, 'clients.json');
  // Limits far above any load here: the bench measures the limiter's cost, never its refusals.
  const client = {
    id: 'bench',
    apiKeySha256: benchKeySha256,
    webhookSecret: benchWebhookSecret,
    rateLimitPerMinute: 1e9,
    createLimitPerMinute: 1e9,
  };
  await writeFile(clientsFile, JSON.stringify({ clients: [client] }));
  const dbPath = join(dir, 'gateway.db');
  const port = await freePort();
  const { process: child, match } = await startProcess({
    name: options.name,
    command: process.execPath,
    args: [...(options.nodeArgs ?? []), 'dist/src/server.js'],
    env: {
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      CLIENTS_FILE: clientsFile,
      DATABASE_URL: `sqlite:${dbPath}`,
      ELKAPI_API_KEY: undefined,
      ELKAPI_BASE_URL: undefined,
      ...options.env,
    },
    ready: /Video gateway listening on (http:\/\/\S+)/,
  });
  const url = match[1] ?? '';
  const removeDatabase = (): Promise<void> => rm(dir, { recursive: true, force: true });
  return {
    url,
    pid: child.pid,
    dbPath,
    process: child,
    memory: () => memoryOf(child.pid),
    metrics: async () => new PrometheusText(await (await fetch(`${url}/metrics`)).text()),
    async stop() {
      await child.stop();
      if (options.keepDatabase !== true) await removeDatabase();
    },
    removeDatabase,
  };
}

/** A scrape of `/metrics`, read the way a Prometheus query would. */
export class PrometheusText {
  constructor(readonly text: string) {}

  /** Sum of every sample of `name` whose labels include `labels`. */
  sum(name: string, labels: Record<string, string> = {}): number {
    let total = 0;
    for (const line of this.text.split('\n')) {
      const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (match === null || match[1] !== name) continue;
      const given = new Map([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((pair) => [pair[1], pair[2]]));
      if (Object.entries(labels).every(([label, value]) => given.get(label) === value)) total += Number(match[3]);
    }
    return total;
  }
}

export interface VideoBody {
  id: string;
  status: string;
  updatedAt: string;
}

export function isVideoBody(value: unknown): value is VideoBody {
  return (
    typeof value === 'object' &&
    value !== null &&
    'id' in value &&
    typeof value.id === 'string' &&
    'status' in value &&
    typeof value.status === 'string' &&
    'updatedAt' in value &&
    typeof value.updatedAt === 'string'
  );
}

export async function createVideo(gatewayUrl: string, body: Record<string, unknown> = { prompt: 'A benchmark video' }): Promise<VideoBody> {
  const response = await fetch(`${gatewayUrl}/videos`, { method: 'POST', headers: jsonHeaders, body: JSON.stringify(body) });
  const video: unknown = await response.json();
  if (response.status !== 202 || !isVideoBody(video)) throw new Error(`POST /videos answered ${response.status}`);
  return video;
}

/** Reads the video until `done` holds; returns the last answer with its exact bytes and ETag. */
export async function readVideoUntil(
  gatewayUrl: string,
  id: string,
  done: (video: VideoBody) => boolean,
  timeoutMs = 60_000,
): Promise<{ video: VideoBody; body: string; etag: string | null }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await fetch(`${gatewayUrl}/videos/${id}`, { headers: authHeaders });
    const body = await response.text();
    const video: unknown = JSON.parse(body);
    if (!isVideoBody(video)) throw new Error(`GET /videos/${id} answered ${response.status}`);
    if (done(video)) return { video, body, etag: response.headers.get('etag') };
    if (Date.now() > deadline) throw new Error(`video ${id} still ${video.status} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
