/** Upstream callbacks end to end: a listening gateway and a simulator that calls it back, on one manual clock. */
import { createServer } from 'node:net';

import type { Test } from 'tap';

import { createClientRegistry } from '../../src/auth/clients.js';
import { startTestGateway, testClientsFile, type TestGateway } from './gateway.js';
import { ManualClock, ManualTimers } from './manual-time.js';
import { type ScriptedServer, sendText, startScriptedServer } from './scripted-server.js';

/** A port free a moment ago (the gateway must know its own callback URL before it listens). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface Flow {
  gw: TestGateway;
  timers: ManualTimers;
  receiver: ScriptedServer;
  /** Moves manual time in `stepMs` steps, letting callbacks land and the poller and dispatcher run after each. */
  run: (ms: number, stepMs?: number) => Promise<void>;
}

/** A listening gateway on a manual clock, a simulator with real callbacks on the same clock, a webhook receiver. */
export async function callbackFlow(
  t: Test,
  gatewaySecret: Buffer,
  options: { callbacks: boolean; baseUrl: boolean; durationMs?: number; createLimitPerMinute?: number; noEstimate?: boolean },
): Promise<Flow> {
  const clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000);
  const timers = new ManualTimers(clock);
  const port = await freePort();
  const receiver = await startScriptedServer();
  receiver.respond((_request, response) => sendText(response, 204, ''));
  t.teardown(() => receiver.close());
  const gw = await startTestGateway(t, {
    clock,
    sandbox: {
      durationMs: options.durationMs ?? 60_000,
      queueMs: 2_000,
      callbacks: options.callbacks,
      timers,
      ...(options.noEstimate === true ? { estimateWaitSeconds: null } : {}),
    },
    env: {
      ...(options.baseUrl ? { UPSTREAM_CALLBACK_BASE_URL: `http://127.0.0.1:${port}` } : {}),
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    },
    gateway: {
      gatewaySecret,
      ...(options.createLimitPerMinute === undefined
        ? {}
        : {
            clients: createClientRegistry({
              clients: testClientsFile.clients.map((client) => ({ ...client, createLimitPerMinute: options.createLimitPerMinute })),
            }),
          }),
    },
  });
  await gw.app.listen({ port, host: '127.0.0.1' });
  const run = async (ms: number, stepMs = 100): Promise<void> => {
    for (let elapsed = 0; elapsed < ms; elapsed += stepMs) {
      timers.advance(Math.min(stepMs, ms - elapsed));
      await gw.sandbox.callbacksSettled();
      await gw.poller.tick();
      await gw.dispatcher.tick();
    }
  };
  return { gw, timers, receiver, run };
}
