import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { sharedSchemas } from '../schemas/index.js';
import { healthRoutes } from '../routes/health.js';
import { videoRoutes } from '../routes/videos.js';
import type { ClientRegistry } from './auth/clients.js';
import { systemClock, type Clock, type Random } from './clock.js';
import type { Config } from './config.js';
import { createInProcessBus, type EventBus } from './events/bus.js';
import { errorHandler, ProblemError, sendProblem } from './http/problems.js';
import { openapiOptions } from './http/openapi.js';
import { createValidatorCompiler } from './http/validation.js';
import { createIdSource, type IdSource } from './ids.js';
import type { Logger } from './lib/logger.js';
import { registerSandboxAssets } from './sandbox/assets.js';
import { openSqliteStore } from './store/sqlite.js';
import type { VideoStore } from './store/types.js';
import { createPoller, type Poller } from './tracking/poller.js';
import { createUpstreamClient } from './upstream/client.js';
import { createUpstreamHealth, type UpstreamHealth } from './upstream/health.js';
import type { UpstreamClient } from './upstream/types.js';
import { createVideoService, type VideoService } from './videos/service.js';

/** Everything the gateway is built from; tests replace the clock, ids, upstream or logger. */
export interface GatewayOptions {
  config: Config;
  clients: ClientRegistry;
  clock?: Clock;
  random?: Random;
  ids?: IdSource;
  upstream?: UpstreamClient;
  store?: VideoStore;
  /** Fastify/pino logger options (tests pass a stream to capture lines). */
  logger?: FastifyServerOptions['logger'];
  /** Serve the sandbox's sample video and thumbnail (sandbox mode). */
  serveSandboxAssets?: boolean;
}

export interface Gateway {
  app: FastifyInstance;
  store: VideoStore;
  bus: EventBus;
  videos: VideoService;
  poller: Poller;
  health: UpstreamHealth;
  /** Starts background work (polling). HTTP listening is the caller's. */
  startWorkers(): void;
  /** Stops background work, then the server, then the store. */
  close(): Promise<void>;
}

const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

/** Log redaction: keys, secrets and authorization headers never reach a log line. */
const redact = {
  paths: ['req.headers.authorization', 'req.headers["idempotency-key"]', '*.apiKey', '*.webhookSecret', '*.authorization', 'headers.authorization'],
  censor: '[redacted]',
};

export async function buildGateway(options: GatewayOptions): Promise<Gateway> {
  const { config } = options;
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const ids = options.ids ?? createIdSource(clock);

  const app = Fastify({
    logger: options.logger ?? { level: config.logLevel, redact },
    bodyLimit: 64 * 1024,
    genReqId: (request) => {
      const given = request.headers['x-request-id'];
      return typeof given === 'string' && requestIdPattern.test(given) ? given : ids.requestId();
    },
    ajv: { customOptions: { removeAdditional: false } },
    routerOptions: { maxParamLength: 200 },
  }).withTypeProvider<TypeBoxTypeProvider>();

  const logger: Logger = app.log;
  const store = options.store ?? (await openSqliteStore({ path: config.sqlitePath }));
  const upstream =
    options.upstream ??
    createUpstreamClient({
      baseUrl: config.elkapiBaseUrl,
      apiKey: config.elkapiApiKey ?? 'sandbox',
      maxRps: config.upstreamMaxRps,
      clock,
      random,
      logger,
    });
  const bus = createInProcessBus();
  const health = createUpstreamHealth(clock);
  const schedule = { minMs: config.pollIntervalMinMs, maxMs: config.pollIntervalMaxMs };

  const poller = createPoller({
    store,
    upstream,
    bus,
    clock,
    random,
    newMessageId: ids.messageId,
    health,
    logger,
    policy: { schedule, taskTimeoutMs: config.taskTimeoutMs, notFoundGraceMs: 60_000 },
    concurrency: config.pollConcurrency,
    leaseMs: 60_000,
  });
  const videos = createVideoService({
    store,
    upstream,
    bus,
    clock,
    random,
    ids,
    health,
    logger,
    schedule,
    cacheMaxEntries: config.cacheMaxEntries,
    onCreated: () => poller.wake(),
  });

  // JSON only: a text/plain body is a 415, not a string that fails validation.
  app.removeContentTypeParser('text/plain');
  app.setValidatorCompiler(createValidatorCompiler(sharedSchemas));
  for (const schema of sharedSchemas) app.addSchema(schema);
  app.decorateRequest('client', null);
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) => sendProblem(reply, new ProblemError('not_found', `No route ${request.method} ${(request.url.split('?')[0] ?? '').slice(0, 200)}.`)));

  await app.register(swagger, openapiOptions);
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { deepLinking: true, persistAuthorization: true } });
  await app.register(videoRoutes, { videos, authenticate: (header) => options.clients.authenticate(header) });
  await app.register(healthRoutes, { store, health });
  if (options.serveSandboxAssets === true) await app.register(registerSandboxAssets);

  let closed = false;
  return {
    app,
    store,
    bus,
    videos,
    poller,
    health,
    startWorkers: () => poller.start(),
    async close() {
      if (closed) return;
      closed = true;
      await poller.stop();
      await app.close();
      await upstream.close();
      await store.close();
    },
  };
}
