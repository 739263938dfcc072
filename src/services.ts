import { randomBytes } from 'node:crypto';

import type { Dispatcher as HttpDispatcher } from 'undici';

import type { ClientRegistry } from './auth/clients.js';
import { type Clock, type Random, systemClock } from './clock.js';
import type { Config } from './config.js';
import { createInProcessBus, type EventBus } from './events/bus.js';
import { createPgChangeListener } from './events/pg-listener.js';
import { createIdSource, type IdSource } from './ids.js';
import type { Logger } from './lib/logger.js';
import { openRedisLink, type RedisLink } from './limits/redis-link.js';
import { createSharedUpstreamBudget } from './limits/shared-upstream-budget.js';
import { createMetrics, type GatewayMetrics } from './metrics.js';
import { createReadinessCheck, type ReadinessCheck } from './readiness.js';
import { deriveKey } from './secrets/gateway-secret.js';
import { openStore } from './store/open.js';
import type { StoredResponse } from './store/records.js';
import type { Store } from './store/repositories.js';
import { systemTimers, type Timers } from './timers.js';
import { createCallbackTokens } from './tracking/callback-token.js';
import { createPoller, type Poller } from './tracking/poller.js';
import { callbackSafetyNetSchedule, firstPollAt } from './tracking/schedule.js';
import { createUpstreamCallbacks, type UpstreamCallbacks } from './tracking/upstream-callbacks.js';
import { type CircuitBreakerOptions, type CircuitState, withCircuitBreaker } from './upstream/circuit-breaker.js';
import { createUpstreamClient, type UpstreamClientOptions } from './upstream/client.js';
import { createUpstreamHealth, type UpstreamHealth, withHealthTracking } from './upstream/health.js';
import { realSleep } from './upstream/rate-budget.js';
import type { UpstreamClient, UpstreamError } from './upstream/types.js';
import { createVideoCreator, type VideoCreator } from './videos/create.js';
import { createVideoEraser, type VideoEraser } from './videos/erase.js';
import { createIdempotencyKeyPruner } from './videos/idempotency-pruner.js';
import { createVideoRetention, type VideoRetention } from './videos/retention.js';
import { createVideoService, type VideoService } from './videos/service.js';
import { createStreamTokens, type StreamTokens } from './videos/stream-tokens.js';
import { createVideoWatch, type VideoWatch } from './videos/watch.js';
import { createCallbackUrlValidator, createImageUrlValidator } from './webhooks/callback-policy.js';
import { createDeliveryService, type DeliveryService } from './webhooks/delivery-service.js';
import { createDispatcher, type WebhookDispatcher } from './webhooks/dispatcher.js';
import { createGuardedAgent } from './webhooks/ssrf.js';

/** What the services are built from; tests replace the clock, ids, timers, upstream or store. */
export interface ServicesOptions {
  config: Config;
  clients: ClientRegistry;
  logger: Logger;
  /** The root secret (src/secrets/gateway-secret.ts) keys are derived from; default a random one per process (tests). */
  gatewaySecret?: Buffer;
  clock?: Clock;
  random?: Random;
  ids?: IdSource;
  /** Timers of long-polls, SSE keep-alives and key pruning (tests drive them by hand). */
  timers?: Timers;
  /** The upstream client, or a factory given the gateway's hooks: metrics and logger (tests build theirs against a sandbox). */
  upstream?: UpstreamClient | ((hooks: UpstreamHooks) => UpstreamClient);
  /** Circuit breaker over upstream calls; defaults: 5 consecutive outages, 30 s open. */
  circuit?: Omit<CircuitBreakerOptions, 'clock' | 'onStateChange' | 'onShortCircuit'>;
  store?: Store;
  /** Prefix of the Redis keys (with REDIS_URL); replicas that share limits share it. Default `video-gateway:`. */
  redisKeyPrefix?: string;
  /** Where webhooks are sent through; default the SSRF-guarded undici agent (tests may pass a MockAgent). */
  webhookAgent?: HttpDispatcher;
  /** The answer stored under an Idempotency-Key for a final upstream refusal: the HTTP layer's problem response. */
  renderRefusal: (error: UpstreamError, requestId: string) => StoredResponse;
}

/** What the gateway hands an upstream client it does not build itself: its metrics hook and its logger. */
export interface UpstreamHooks {
  onCall: NonNullable<UpstreamClientOptions['onCall']>;
  logger: NonNullable<UpstreamClientOptions['logger']>;
  /** The UPSTREAM_MAX_RPS budget shared by all replicas (with REDIS_URL). */
  sharedBudget?: UpstreamClientOptions['sharedBudget'];
}

export interface Services {
  clock: Clock;
  clients: ClientRegistry;
  store: Store;
  bus: EventBus;
  /** Shared counters of all replicas (REDIS_URL), or null: limits per replica. */
  redis: RedisLink | null;
  metrics: GatewayMetrics;
  health: UpstreamHealth;
  circuitState: () => CircuitState;
  videos: VideoService;
  /** POST /videos with the Idempotency-Key protocol. */
  creator: VideoCreator;
  /** DELETE /videos/{id}. */
  eraser: VideoEraser;
  /** VIDEO_RETENTION sweeps; null when videos are kept. */
  retention: VideoRetention | null;
  watch: VideoWatch;
  /** Tokens for `GET /videos/{id}/events?token=` (browsers' EventSource). */
  streamTokens: StreamTokens;
  deliveries: DeliveryService;
  readiness: ReadinessCheck;
  poller: Poller;
  dispatcher: WebhookDispatcher;
  /** POST /upstream/callbacks/:token; null without UPSTREAM_CALLBACK_BASE_URL. */
  upstreamCallbacks: UpstreamCallbacks | null;
  /** Starts background work: polling, webhook delivery, key pruning, retention. */
  startWorkers: () => void;
  /** Stops claiming work; lets polls and webhook attempts in flight finish within `graceMs`, then aborts them. */
  stopWorkers(graceMs: number): Promise<void>;
  /** Releases the upstream connections and the store: after the HTTP server has closed. */
  close(): Promise<void>;
}

/** Webhook attempts in flight at once, and toward one receiver (so a slow one cannot starve the others). */
const WEBHOOK_CONCURRENCY = 32;
const WEBHOOK_PER_HOST_CONCURRENCY = 4;

/** Builds every service of the gateway: the one place that wires them, and no HTTP framework in sight. */
export async function buildServices(options: ServicesOptions): Promise<Services> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const ids = options.ids ?? createIdSource(clock);
  const timers = options.timers ?? systemTimers;

  const store =
    options.store ??
    (await openStore(config, {
      onIdleError: (error) => logger.warn({ err: error }, 'an idle database connection failed; the pool replaces it'),
      logger,
    }));
  const metrics = createMetrics();
  // With REDIS_URL the limits are shared by every replica (DESIGN §4.5); Redis down means local limits, never errors.
  const redis =
    config.redisUrl === null
      ? null
      : await openRedisLink({
          url: config.redisUrl,
          keyPrefix: options.redisKeyPrefix ?? 'video-gateway:',
          logger,
          registry: metrics.registry,
        });
  const sharedBudget =
    redis !== null && Number.isFinite(config.upstreamMaxRps) && config.upstreamMaxRps > 0
      ? createSharedUpstreamBudget({ link: redis, ratePerSecond: config.upstreamMaxRps, sleep: realSleep })
      : undefined;
  const upstreamHooks: UpstreamHooks = {
    onCall: metrics.recordUpstreamCall,
    logger,
    ...(sharedBudget === undefined ? {} : { sharedBudget }),
  };
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
      if (state === 'open')
        logger.warn({ circuit: state }, 'upstream circuit opened after repeated failures: creates answer 503 until a probe succeeds');
      else logger.info({ circuit: state }, `upstream circuit ${state === 'closed' ? 'closed' : 'half-open: probing'}`);
    },
  });
  const bus = createInProcessBus();
  const baseSchedule = { minMs: config.pollIntervalMinMs, maxMs: config.pollIntervalMaxMs };
  // With upstream callbacks, polls are the safety net for lost ones (DESIGN §4.1).
  const callbacksOn = config.upstreamCallbackBaseUrl !== null;
  const schedule = callbacksOn ? callbackSafetyNetSchedule(baseSchedule, config.pollIntervalMaxWithCallbacksMs) : baseSchedule;

  const poller = createPoller({
    videos: store.videos,
    upstream,
    bus,
    clock,
    random,
    newMessageId: ids.messageId,
    logger,
    policy: { schedule, taskTimeoutMs: config.taskTimeoutMs, notFoundGraceMs: 60_000 },
    concurrency: config.pollConcurrency,
    leaseMs: config.pollLeaseMs,
    onTransition: (video) => metrics.recordTransition(video),
  });
  const upstreamCallbacks =
    config.upstreamCallbackBaseUrl === null
      ? null
      : createUpstreamCallbacks({
          videos: store.videos,
          tokens: createCallbackTokens(options.gatewaySecret ?? randomBytes(32)),
          baseUrl: config.upstreamCallbackBaseUrl,
          clock,
          hint: (videoId, madeDue) => poller.hint(videoId, madeDue),
          logger,
          onReceived: (outcome) => metrics.recordUpstreamCallback(outcome === 'accepted' ? 'valid' : outcome),
          onPollScheduled: () => metrics.recordCallbackPoll(),
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
    deliveries: store.deliveries,
    videos: store.videos,
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
  const deliveries = createDeliveryService({ videos: store.videos, deliveries: store.deliveries, bus, clock, logger });
  const videos = createVideoService({ videos: store.videos, upstream, bus, clock, logger, cacheMaxEntries: config.cacheMaxEntries });
  const creator = createVideoCreator({
    videos: store.videos,
    keys: store.idempotencyKeys,
    upstream,
    clock,
    ids,
    logger,
    firstPollAt: firstPollAt(schedule, random),
    renderRefusal: options.renderRefusal,
    onCreated: () => poller.wake(),
    ...(upstreamCallbacks === null ? {} : { upstreamCallbackUrl: (videoId: string) => upstreamCallbacks.urlFor(videoId) }),
    checkCallbackUrl: createCallbackUrlValidator({
      allowHttp: config.webhookAllowHttp,
      allowPrivateNetworks: config.webhookAllowPrivateNetworks,
    }),
    checkImageUrl: createImageUrlValidator({ allowPrivateNetworks: config.webhookAllowPrivateNetworks }),
  });
  // Replicas on one Postgres (DESIGN §4.5): changes committed by any replica reach this one's waiters, cache and dispatcher.
  const changeFeed =
    config.postgresUrl !== null
      ? createPgChangeListener({
          connectionString: config.postgresUrl,
          bus,
          videos: store.videos,
          cache: videos,
          wakeDispatcher: () => dispatcher.wake(),
          timers,
          random,
          logger,
          registry: metrics.registry,
        })
      : null;
  await changeFeed?.start();
  const keyPruner = createIdempotencyKeyPruner({ keys: store.idempotencyKeys, clock, timers, logger });
  const eraser = createVideoEraser({ videos: store.videos, bus, clock, logger });
  const retention =
    config.videoRetentionMs === null
      ? null
      : createVideoRetention({ videos: store.videos, bus, clock, timers, logger, retentionMs: config.videoRetentionMs });
  const gatewaySecret = options.gatewaySecret ?? randomBytes(32);
  const streamTokens = createStreamTokens({ key: deriveKey(gatewaySecret, 'stream-tokens'), clock });
  // Creates cut off mid-submit (a crash, a kill) end submit_interrupted once past the create deadline.
  const recoverInterrupted = (): void => {
    creator
      .recoverInterrupted()
      .catch((error: unknown) => logger.warn({ err: error }, 'recovering interrupted creates failed; retrying later'));
  };
  let stopRecovery: (() => void) | null = null;
  const watch = createVideoWatch({ bus, videos, timers });
  const readiness = createReadinessCheck({
    pingStore: () => store.ping(),
    writeHeartbeat: (now) => store.heartbeat(now),
    clock,
    logger,
    health,
    circuitState: upstream.circuitState,
  });
  metrics.attach({
    videosInFlight: () => store.videos.countRunning(),
    cacheStats: () => videos.cacheStats(),
    circuitState: upstream.circuitState,
  });

  return {
    clock,
    clients: options.clients,
    store,
    bus,
    redis,
    metrics,
    health,
    circuitState: upstream.circuitState,
    videos,
    creator,
    eraser,
    retention,
    watch,
    streamTokens,
    deliveries,
    readiness,
    poller,
    dispatcher,
    upstreamCallbacks,
    startWorkers() {
      poller.start();
      dispatcher.start();
      keyPruner.start();
      retention?.start();
      recoverInterrupted();
      stopRecovery ??= timers.setInterval(recoverInterrupted, 30_000);
    },
    async stopWorkers(graceMs) {
      keyPruner.stop();
      stopRecovery?.();
      stopRecovery = null;
      await retention?.stop();
      // An unfinished poll's lease simply expires; an aborted webhook attempt is given back and sent again after restart.
      await Promise.all([poller.stop(graceMs), dispatcher.stop(graceMs)]);
      if (options.webhookAgent === undefined) await webhookAgent.close();
    },
    async close() {
      await changeFeed?.close();
      await upstream.close();
      await redis?.close();
      await store.close();
    },
  };
}
