import Fastify, { type FastifyInstance, type RouteOptions } from 'fastify';

import { systemClock } from './clock.js';
import { gatewayApp } from './http/app-plugin.js';
import { problemResponse } from './http/problems.js';
import { gatewayServerOptions } from './http/server-options.js';
import { createIdSource } from './ids.js';
import type { LoggerOption } from './lib/log-redaction.js';
import { buildServices, type Services, type ServicesOptions } from './services.js';

export type { UpstreamHooks } from './services.js';

/** Everything the gateway is built from; tests replace the clock, ids, upstream or logger. */
export interface GatewayOptions extends Omit<ServicesOptions, 'logger' | 'renderRefusal'> {
  /** How long `close()` lets poll and webhook attempts in flight finish before it aborts them. Default SHUTDOWN_GRACE_MS. */
  shutdownGraceMs?: number;
  /** Fastify/pino logger options (tests pass a stream to capture lines). */
  logger?: LoggerOption;
  /** Serve the sandbox's sample video and thumbnail (sandbox mode). */
  serveSandboxAssets?: boolean;
  /** Sees every route as it is added (the bad-input suite collects them to prove each one is attacked). */
  onRoute?: (route: RouteOptions) => void;
}

export interface Gateway extends Pick<
  Services,
  'store' | 'bus' | 'videos' | 'creator' | 'poller' | 'dispatcher' | 'retention' | 'health' | 'metrics' | 'circuitState' | 'startWorkers'
> {
  app: FastifyInstance;
  /** Stops background work, then the server, then the store. */
  close(): Promise<void>;
}

/** Wires the gateway: Fastify with its server options, the services, and the HTTP layer over them. */
export async function buildGateway(options: GatewayOptions): Promise<Gateway> {
  const ids = options.ids ?? createIdSource(options.clock ?? systemClock);
  const app = Fastify(gatewayServerOptions({ config: options.config, clients: options.clients, ids, logger: options.logger }));
  if (options.onRoute !== undefined) app.addHook('onRoute', options.onRoute);
  const services = await buildServices({ ...options, ids, logger: app.log, renderRefusal: problemResponse });
  await app.register(gatewayApp, {
    services,
    authenticate: (header) => options.clients.authenticate(header),
    authenticateStreamToken: (token, videoId) => {
      const grant = services.streamTokens.verify(token, videoId);
      return grant === undefined ? undefined : options.clients.get(grant.clientId);
    },
    serveSandboxAssets: options.serveSandboxAssets === true,
    metricsToken: options.config.metricsToken,
  });

  let closed = false;
  const { store, bus, videos, creator, poller, dispatcher, retention, health, metrics, circuitState, startWorkers } = services;
  return {
    app,
    store,
    bus,
    videos,
    creator,
    poller,
    dispatcher,
    retention,
    health,
    metrics,
    circuitState,
    startWorkers,
    async close() {
      if (closed) return;
      closed = true;
      await services.stopWorkers(options.shutdownGraceMs ?? options.config.shutdownGraceMs);
      await app.close();
      await services.close();
    },
  };
}
