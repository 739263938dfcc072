import { createServer } from 'node:net';

import { buildGateway, type Gateway } from '../app.js';
import type { ClientRegistry } from '../auth/clients.js';
import { loadConfigOrThrow } from '../config.js';
import { type Sandbox, startSandbox } from './simulator.js';

/*
 * A whole sandbox gateway in this process, listening on 127.0.0.1 with the real clock and its background workers
 * running: what `npm start` runs without a key, for `npm run demo` and the browser test, which need a gateway a
 * browser (or a person) can watch in real time.
 */

export interface LiveSandboxGatewayOptions {
  clients: ClientRegistry;
  /** SQLite file of this run (a temporary directory's). */
  sqlitePath: string;
  /** Further configuration, as environment variables (e.g. a fast `SANDBOX_DURATION_MS`). */
  env?: Record<string, string>;
  gatewaySecret?: Buffer;
}

export interface LiveSandboxGateway {
  /** `http://127.0.0.1:<port>` */
  url: string;
  gateway: Gateway;
  sandbox: Sandbox;
  close(): Promise<void>;
}

/** A free port on 127.0.0.1: the simulator must know the gateway's address (its asset URLs) before the gateway exists. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('could not find a free port');
  return address.port;
}

export async function startLiveSandboxGateway(options: LiveSandboxGatewayOptions): Promise<LiveSandboxGateway> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const config = loadConfigOrThrow({ LOG_LEVEL: 'silent', ...options.env, DATABASE_URL: `sqlite:${options.sqlitePath}` });
  if (config.elkapiApiKey !== null) throw new Error('a live sandbox gateway runs without ELKAPI_API_KEY');
  const sandbox = await startSandbox({
    durationMs: config.sandbox.durationMs,
    queueMs: config.sandbox.queueMs,
    errorRate: config.sandbox.errorRate,
    latencyMs: config.sandbox.latencyMs,
    assetBaseUrl: `${url}/sandbox/assets`,
  });
  const gateway = await buildGateway({
    config: { ...config, elkapiBaseUrl: sandbox.url },
    clients: options.clients,
    ...(options.gatewaySecret === undefined ? {} : { gatewaySecret: options.gatewaySecret }),
    serveSandboxAssets: true,
    logger: false,
  });
  await gateway.app.listen({ port, host: '127.0.0.1' });
  gateway.startWorkers();
  return {
    url,
    gateway,
    sandbox,
    async close() {
      await gateway.close();
      await sandbox.close();
    },
  };
}
