import { networkInterfaces } from 'node:os';
import { resolve } from 'node:path';

import closeWithGrace from 'close-with-grace';

import { buildGateway } from './app.js';
import { loadClientRegistry } from './auth/clients.js';
import { type Config, formatConfigProblems, loadConfig, redactConfig, sandboxEnabled } from './config.js';
import { formatDuration } from './duration.js';
import { type Sandbox, startSandbox } from './sandbox/simulator.js';
import { loadGatewaySecret } from './secrets/gateway-secret.js';

/** The host a phone on the same network can reach when we listen on every interface. */
function reachableHost(host: string): string {
  if (host !== '0.0.0.0' && host !== '::') return host.includes(':') ? `[${host}]` : host;
  for (const addresses of Object.values(networkInterfaces())) {
    const lan = addresses?.find((address) => address.family === 'IPv4' && !address.internal);
    if (lan !== undefined) return lan.address;
  }
  return '127.0.0.1';
}

function sandboxBanner(config: Config, sandbox: Sandbox, publicBaseUrl: string): string {
  const line = '─'.repeat(72);
  return [
    line,
    ' SANDBOX MODE: ELKAPI_API_KEY is not set, so no real videos are generated.',
    ` The built-in ElkAPI simulator answers at ${sandbox.url}; videos complete after`,
    ` ~${formatDuration(config.sandbox.durationMs)} (a prompt containing [fail] fails) with a sample clip from ${publicBaseUrl}/sandbox/assets.`,
    ' Set ELKAPI_API_KEY to use the real ElkAPI; nothing else changes.',
    line,
  ].join('\n');
}

async function main(): Promise<void> {
  const loaded = loadConfig(process.env);
  if (!loaded.ok) {
    process.stderr.write(`Invalid configuration:\n${formatConfigProblems(loaded.problems)}\n`);
    process.exit(1);
  }
  let config = loaded.config;
  // The first-start banner carries a new key: straight to stdout, never through the shipped logs.
  const clients = await loadClientRegistry({
    clientsFile: config.clientsFile,
    dataDir: resolve('data'),
    log: (line) => process.stdout.write(`${line}\n`),
  });

  const gatewaySecret = await loadGatewaySecret({
    configured: config.gatewaySecret ?? undefined,
    dataDir: resolve('data'),
    log: (line) => process.stdout.write(`${line}\n`),
  });

  const sandboxMode = sandboxEnabled(config);
  let sandbox: Sandbox | null = null;
  const publicBaseUrl = `http://${reachableHost(config.host)}:${config.port}`;
  if (sandboxMode) {
    sandbox = await startSandbox({
      host: '127.0.0.1',
      port: 0,
      durationMs: config.sandbox.durationMs,
      queueMs: config.sandbox.queueMs,
      errorRate: config.sandbox.errorRate,
      latencyMs: config.sandbox.latencyMs,
      assetBaseUrl: `${publicBaseUrl}/sandbox/assets`,
    });
    config = { ...config, elkapiBaseUrl: sandbox.url };
  }

  const gateway = await buildGateway({ config, clients, gatewaySecret, serveSandboxAssets: sandboxMode });
  // The grace for work in flight, plus time to close the server and the store.
  closeWithGrace({ delay: config.shutdownGraceMs + 10_000, logger: gateway.app.log }, async ({ err, signal }) => {
    if (err !== undefined) gateway.app.log.error({ err }, 'shutting down after an unexpected error');
    else gateway.app.log.info({ signal }, 'shutting down');
    await gateway.close();
    await sandbox?.close();
  });

  // What the process runs with, for operators; the upstream key is shown as "(hidden)".
  gateway.app.log.info({ config: redactConfig(config) }, 'configuration');
  const address = await gateway.app.listen({ port: config.port, host: config.host });
  gateway.startWorkers();
  if (sandbox !== null) process.stdout.write(`${sandboxBanner(config, sandbox, publicBaseUrl)}\n`);
  process.stdout.write(`Video gateway listening on ${address} — Swagger UI at ${publicBaseUrl}/docs\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`The gateway could not start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
