import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { Test } from 'tap';

import type { Video } from '../../schemas/video.js';
import { buildGateway, type Gateway, type GatewayOptions } from '../../src/app.js';
import { createClientRegistry } from '../../src/auth/clients.js';
import { type Config, loadConfig } from '../../src/config.js';
import { type Sandbox, type SandboxOptions, startSandbox } from '../../src/sandbox/simulator.js';
import { createUpstreamClient } from '../../src/upstream/client.js';
import { ManualClock } from './manual-time.js';

export const clientKeys = {
  alice: 'vgk_test_alice_0123456789abcdefghijklmnopqrstuv',
  bob: 'vgk_test_bob_0123456789abcdefghijklmnopqrstuvwxy',
} as const;
export const webhookSecrets = {
  alice: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  bob: 'whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD',
} as const;

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

export const testClientsFile = {
  clients: [
    { id: 'alice', name: 'Alice app', apiKeySha256: sha256(clientKeys.alice), webhookSecret: webhookSecrets.alice },
    { id: 'bob', name: 'Bob app', apiKeySha256: sha256(clientKeys.bob), webhookSecret: webhookSecrets.bob },
  ],
};

export const auth = (who: keyof typeof clientKeys = 'alice'): Record<string, string> => ({ authorization: `Bearer ${clientKeys[who]}` });

function testConfig(overrides: Record<string, string> = {}, sqlitePath = ':memory:'): Config {
  const loaded = loadConfig({
    DATABASE_URL: `sqlite:${sqlitePath}`,
    LOG_LEVEL: 'silent',
    ELKAPI_API_KEY: 'elk-test-key-do-not-leak',
    UPSTREAM_MAX_RPS: '100000',
    ...overrides,
  });
  if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
  return loaded.config;
}

export interface TestGateway extends Gateway {
  clock: ManualClock;
  sandbox: Sandbox;
  config: Config;
}

export interface TestGatewayOptions {
  env?: Record<string, string>;
  sandbox?: Partial<SandboxOptions>;
  /** Reuse a database file across gateways (restart tests). */
  sqlitePath?: string;
  clock?: ManualClock;
  sandboxInstance?: Sandbox;
  gateway?: Partial<GatewayOptions>;
  /** Per-attempt upstream timeout (short in timeout tests). */
  upstreamTimeoutMs?: number;
}

/**
 * A directory of this gateway's own, outside `t.testdir()`: that one is recreated (emptied) at every call, so a test
 * calling it after starting a gateway would delete the open database under it (the store then refuses every
 * statement, as it should for a deleted file).
 */
function ownDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'gateway-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A gateway on a manual clock, in front of a real sandbox upstream (HTTP on 127.0.0.1), with a real
 * SQLite store. Nothing listens for the gateway itself: tests use `app.inject` unless they need a socket.
 */
export async function startTestGateway(t: Test, options: TestGatewayOptions = {}): Promise<TestGateway> {
  const clock = options.clock ?? new ManualClock(Date.parse('2026-11-29T12:00:00.000Z'));
  const config = testConfig(options.env, options.sqlitePath ?? join(ownDir(t), 'gateway.db'));
  const sandbox =
    options.sandboxInstance ??
    (await startSandbox({
      clock,
      apiKey: 'elk-test-key-do-not-leak',
      assetBaseUrl: 'http://127.0.0.1:3000/sandbox/assets',
      random: () => 0.5,
      ...options.sandbox,
    }));
  // A factory, so the gateway's hooks (metrics onCall, logger) reach the client.
  const upstream: NonNullable<GatewayOptions['upstream']> = (hooks) =>
    createUpstreamClient({
      baseUrl: sandbox.url,
      apiKey: config.elkapiApiKey ?? 'none',
      timeoutMs: options.upstreamTimeoutMs ?? 2000,
      maxRps: 0,
      sleep: async () => {},
      random: () => 0.5,
      clock,
      ...hooks,
    });
  const gateway = await buildGateway({
    config,
    clients: createClientRegistry(testClientsFile),
    clock,
    random: () => 0.5,
    upstream,
    logger: false,
    ...options.gateway,
  });
  t.teardown(async () => {
    await gateway.close();
    if (options.sandboxInstance === undefined) await sandbox.close();
  });
  return { ...gateway, clock, sandbox, config };
}

/** Creates a video as `who` and returns the parsed body. */
export async function createVideo(
  gateway: Gateway,
  body: Record<string, unknown> = { prompt: 'A tiger walking in snow' },
  who: keyof typeof clientKeys = 'alice',
) {
  const response = await gateway.app.inject({ method: 'POST', url: '/videos', headers: auth(who), payload: body });
  if (response.statusCode !== 202) throw new Error(`create failed: ${response.statusCode} ${response.body}`);
  return response.json<Video>();
}

/** GET /videos/{id} as `who`, parsed. */
export async function readVideo(gateway: Gateway, id: string, who: keyof typeof clientKeys = 'alice'): Promise<Video> {
  const response = await gateway.app.inject({ method: 'GET', url: `/videos/${id}`, headers: auth(who) });
  if (response.statusCode !== 200) throw new Error(`read failed: ${response.statusCode} ${response.body}`);
  return response.json<Video>();
}

/** The upstream task id the gateway stored for one of its videos. */
export async function upstreamIdOf(gateway: Gateway, videoId: string): Promise<string> {
  const video = await gateway.store.videos.get(videoId);
  if (video === undefined) throw new Error(`no stored video ${videoId}`);
  return video.upstreamId;
}

/** Moves the manual clock and lets the poller catch up, as the background loop would. */
export async function advanceAndPoll(gateway: TestGateway, ms: number, step = 1000): Promise<void> {
  for (let elapsed = 0; elapsed < ms; elapsed += step) {
    gateway.clock.advance(Math.min(step, ms - elapsed));
    await gateway.poller.tick();
  }
}
