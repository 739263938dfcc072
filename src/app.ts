import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import helmet from '@fastify/helmet';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { sharedSchemas } from '../schemas/index.js';
import { healthRoutes } from '../routes/health.js';
import { metricsRoutes } from '../routes/metrics.js';
import { videoRoutes } from '../routes/videos.js';
import { deliveryRoutes } from '../routes/deliveries.js';
import type { Dispatcher as HttpDispatcher } from 'undici';
import type { ClientRegistry } from './auth/clients.js';
import { systemClock, type Clock, type Random } from './clock.js';
import type { Config } from './config.js';
import { createInProcessBus, type EventBus } from './events/bus.js';
import { errorHandler, ProblemError, sendProblem } from './http/problems.js';
import { openapiOptions } from './http/openapi.js';
import { answerFrameworkError, useStrictJsonParser } from './http/request-parsing.js';
import { apiHelmetOptions, docsContentSecurityPolicy } from './http/security-headers.js';
import { createValidatorCompiler } from './http/validation.js';
import { createIdSource, type IdSource } from './ids.js';
import { createSecretScrubber, withRedaction } from './lib/log-redaction.js';
import type { Logger } from './lib/logger.js';
import { createMetrics, type GatewayMetrics } from './metrics.js';
import { registerSandboxAssets } from './sandbox/assets.js';
import { openSqliteStore } from './store/sqlite.js';
import type { VideoStore } from './store/types.js';
import { createPoller, type Poller } from './tracking/poller.js';
import { createUpstreamClient, type UpstreamClientOptions } from './upstream/client.js';
import { createUpstreamHealth, withHealthTracking, type UpstreamHealth } from './upstream/health.js';
import { withCircuitBreaker, type CircuitBreakerOptions, type CircuitState } from './upstream/circuit-breaker.js';
import type { UpstreamClient } from './upstream/types.js';
import { systemTimers, type Timers } from './timers.js';
import { createClientRateLimits } from './http/client-rate-limits.js';
import { createVideoCreator } from './videos/idempotent-create.js';
import { createVideoService, type VideoService } from './videos/service.js';
import { createCallbackUrlValidator } from './webhooks/callback-policy.js';
import { createDeliveryService } from './webhooks/delivery-service.js';
import { createDispatcher, type WebhookDispatcher } from './webhooks/dispatcher.js';
import { createGuardedAgent } from './webhooks/ssrf.js';
import { createVideoWatch } from './videos/watch.js';

/** Everything the gateway is built from; tests replace the clock, ids, upstream or logger. */
export interface GatewayOptions {
  config: Config;
  clients: ClientRegistry;
  clock?: Clock;
  random?: Random;
  ids?: IdSource;
  /** Timers of long-polls, SSE keep-alives and key pruning (tests drive them by hand). */
  timers?: Timers;
  /** The upstream client, or a factory given the gateway's hooks: metrics and logger (tests build theirs against a sandbox). */
  upstream?: UpstreamClient | ((hooks: UpstreamHooks) => UpstreamClient);
  /** Circuit breaker over upstream calls; defaults: 5 consecutive outages, 30 s open. */
  circuit?: Omit<CircuitBreakerOptions, 'clock' | 'onStateChange' | 'onShortCircuit'>;
  store?: VideoStore;
  /** Where webhooks are sent through; default the SSRF-guarded undici agent (tests may pass a MockAgent). */
  webhookAgent?: HttpDispatcher;
  /** How long `close()` lets poll and webhook attempts in flight finish before it aborts them. Default 5 s. */
  shutdownGraceMs?: number;
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
  dispatcher: WebhookDispatcher;
  health: UpstreamHealth;
  metrics: GatewayMetrics;
  circuitState(): CircuitState;
  /** Starts background work (polling). HTTP listening is the caller's. */
  startWorkers(): void;
  /** Stops background work, then the server, then the store. */
  close(): Promise<void>;
}

/** What the gateway hands an upstream client it does not build itself: its metrics hook and its logger. */
export interface UpstreamHooks {
  onCall: NonNullable<UpstreamClientOptions['onCall']>;
  logger: NonNullable<UpstreamClientOptions['logger']>;
}

const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

/** Webhook attempts in flight at once, and toward one receiver (so a slow one cannot starve the others). */
const WEBHOOK_CONCURRENCY = 32;
const WEBHOOK_PER_HOST_CONCURRENCY = 4;

export async function buildGateway(options: GatewayOptions): Promise<Gateway> {
  const { config } = options;
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const ids = options.ids ?? createIdSource(clock);

  const scrubSecrets = createSecretScrubber([
    ...(config.elkapiApiKey === null ? [] : [config.elkapiApiKey]),
    ...options.clients.all().map((client) => client.webhookSecret),
  ]);
  const app = Fastify({
    // Redaction applies to every logger, a test's capturing stream included.
    logger: withRedaction(options.logger, config.logLevel, scrubSecrets),
    bodyLimit: 64 * 1024,
    genReqId: (request) => {
      const given = request.headers['x-request-id'];
      // A credential sent as a request id would be echoed in every answer and log line: replace it.
      return typeof given === 'string' && requestIdPattern.test(given) && scrubSecrets(given) === given ? given : ids.requestId();
    },
    ajv: { customOptions: { removeAdditional: false } },
    routerOptions: { maxParamLength: 200 },
    // Malformed or overlong URLs are refused before routing: still as problems.
    frameworkErrors: answerFrameworkError,
  }).withTypeProvider<TypeBoxTypeProvider>();

  const logger: Logger = app.log;
  const store = options.store ?? (await openSqliteStore({ path: config.sqlitePath }));
  const metrics = createMetrics();
  const upstreamHooks: UpstreamHooks = { onCall: metrics.recordUpstreamCall, logger };
  const givenUpstream = options.upstream;
  const rawUpstream =
    givenUpstream === undefined
      ? createUpstreamClient({
          baseUrl: config.elkapiBaseUrl,
          apiKey: config.elkapiApiKey ?? 'sandbox',
          maxRps: config.upstreamMaxRps,
          clock,
          random,
          ...upstreamHooks,
        })
      : typeof givenUpstream === 'function'
        ? givenUpstream(upstreamHooks)
        : givenUpstream;
  const health = createUpstreamHealth(clock);
  // One breaker for creates and polls alike; health sees only calls that reached the upstream.
  const upstream = withCircuitBreaker(withHealthTracking(rawUpstream, health), {
    ...options.circuit,
    clock,
    onShortCircuit: metrics.recordShortCircuit,
    onStateChange: (state) => {
      metrics.recordCircuitChange(state);
      if (state === 'open') logger.warn({ circuit: state }, 'upstream circuit opened after repeated failures: creates answer 503 until a probe succeeds');
      else logger.info({ circuit: state }, `upstream circuit ${state === 'closed' ? 'closed' : 'half-open: probing'}`);
    },
  });
  const bus = createInProcessBus();
  const schedule = { minMs: config.pollIntervalMinMs, maxMs: config.pollIntervalMaxMs };

  const poller = createPoller({
    store,
    upstream,
    bus,
    clock,
    random,
    newMessageId: ids.messageId,
    logger,
    policy: { schedule, taskTimeoutMs: config.taskTimeoutMs, notFoundGraceMs: 60_000 },
    concurrency: config.pollConcurrency,
    leaseMs: 60_000,
    onTransition: (video) => metrics.recordTransition(video),
  });
  // Webhooks: every connection is checked against private addresses at connect time (DNS rebinding included).
  const webhookAgent =
    options.webhookAgent ??
    createGuardedAgent({
      allowPrivate: config.webhookAllowPrivateNetworks,
      timeoutMs: config.webhookTimeoutMs,
      connections: WEBHOOK_PER_HOST_CONCURRENCY,
    });
  const dispatcher = createDispatcher({
    store,
    bus,
    clock,
    random,
    clients: options.clients,
    agent: webhookAgent,
    logger,
    retryScheduleMs: config.webhookRetryScheduleMs,
    timeoutMs: config.webhookTimeoutMs,
    concurrency: WEBHOOK_CONCURRENCY,
    perHostConcurrency: WEBHOOK_PER_HOST_CONCURRENCY,
    onDelivery: (outcome, durationMs) => metrics.recordWebhookDelivery(outcome, durationMs),
  });
  const deliveries = createDeliveryService({ store, bus, clock, logger });
  const videos = createVideoService({
    store,
    upstream,
    bus,
    clock,
    random,
    ids,
    logger,
    schedule,
    cacheMaxEntries: config.cacheMaxEntries,
    onCreated: () => poller.wake(),
    checkCallbackUrl: createCallbackUrlValidator({
      allowHttp: config.webhookAllowHttp,
      allowPrivateNetworks: config.webhookAllowPrivateNetworks,
    }),
  });
  const timers = options.timers ?? systemTimers;
  const creator = createVideoCreator({ videos, store, clock, timers, logger });
  const watch = createVideoWatch({ bus, videos, timers });
  // Open long-polls and streams would hold the server's close for up to their full length.
  app.addHook('preClose', async () => watch.closeAll());
  const rateLimits = createClientRateLimits({ clock });

  // JSON only: a text/plain body is a 415, not a string that fails validation.
  app.removeContentTypeParser('text/plain');
  useStrictJsonParser(app);
  app.setValidatorCompiler(createValidatorCompiler(sharedSchemas));
  for (const schema of sharedSchemas) app.addSchema(schema);
  app.decorateRequest('client', null);
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    // The route pattern, never the raw URL: ids in label values would explode cardinality.
    metrics.recordHttpRequest(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime);
  });
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) => sendProblem(reply, new ProblemError('not_found', `No route ${request.method} ${(request.url.split('?')[0] ?? '').slice(0, 200)}.`)));

  await app.register(helmet, apiHelmetOptions);
  await app.register(swagger, openapiOptions);
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { deepLinking: true, persistAuthorization: true },
    staticCSP: docsContentSecurityPolicy,
  });
  await app.register(videoRoutes, { videos, creator, watch, rateLimits, authenticate: (header) => options.clients.authenticate(header) });
  await app.register(deliveryRoutes, { deliveries, rateLimits, authenticate: (header) => options.clients.authenticate(header) });
  await app.register(healthRoutes, { store, health, circuitState: upstream.circuitState });
  await app.register(metricsRoutes, { metrics });
  metrics.attach({ videosInFlight: () => store.countRunning(), cacheStats: () => videos.cacheStats(), circuitState: upstream.circuitState });
  if (options.serveSandboxAssets === true) await app.register(registerSandboxAssets);

  let closed = false;
  return {
    app,
    store,
    bus,
    videos,
    poller,
    dispatcher,
    health,
    metrics,
    circuitState: upstream.circuitState,
    startWorkers: () => {
      poller.start();
      dispatcher.start();
      creator.startPruning();
    },
    async close() {
      if (closed) return;
      closed = true;
      creator.stopPruning();
      // Stop claiming; let polls and webhook attempts in flight finish, within a bound (an unfinished poll's
      // lease simply expires; an aborted webhook attempt is given back and sent again after restart).
      const graceMs = options.shutdownGraceMs ?? 5_000;
      await Promise.all([poller.stop(graceMs), dispatcher.stop(graceMs)]);
      if (options.webhookAgent === undefined) await webhookAgent.close();
      await app.close();
      await upstream.close();
      await store.close();
    },
  };
}
