/**
 * The webhook dispatcher (DESIGN §3, §4): claims due outbox rows with a lease, signs each body with the client's
 * secret (Standard Webhooks), POSTs it through the SSRF-guarded agent, and records every attempt with its outcome
 * in one transaction. Mirrors the poller: `tick()` for tests, a background loop for the process.
 *
 * Caps (issue 13): `concurrency` attempts in flight overall, `perClientConcurrency` per client (its share of the
 * pool) and `perHostConcurrency` per receiver. A receiver is one client's host, whatever the port: eight ports on
 * one host are one receiver, and two clients' callbacks to one host are two (a tenant's dead endpoints never hold
 * another tenant's). Claims interleave clients (each client's oldest due event first). A client at its share is left
 * out of the next claims; a row claimed for a receiver at its cap is given back. A receiver whose attempt got no
 * answer in time cools down (no new attempt until `timeoutMs × 2^(n-1)` after its n-th timeout in a row, at most
 * 5 min; an answer resets it), so a receiver that keeps timing out has its attempts spaced instead of filling slots.
 * A crash at any instant loses nothing: an unrecorded attempt's lease expires and the row is claimed again
 * (at least once; receivers dedupe by `webhook-id`).
 */
import { performance } from 'node:perf_hooks';

import type { Dispatcher } from 'undici';

import type { ClientRegistry } from '../auth/clients.js';
import type { Clock, Random } from '../clock.js';
import type { EventBus } from '../events/bus.js';
import { type ClaimingWorker, createClaimLoop } from '../lib/claim-loop.js';
import { errorCode } from '../lib/error-code.js';
import { settledWithin } from '../lib/grace.js';
import type { Logger } from '../lib/logger.js';
import { createWriteBatcher } from '../lib/write-batcher.js';
import type { ClaimedDelivery, DeliveryAttemptResult, DeliveryNextState } from '../store/records.js';
import type { DeliveryRepository, VideoRepository } from '../store/repositories.js';
import { type AttemptOutcome, classifyResponse, networkFailure, permanentFailure, truncate } from './outcome.js';
import { buildWebhookPayload, signWebhook } from './payload.js';
import { nextAttemptAt } from './schedule.js';
import { isForbiddenAddressError, UNREACHABLE_HOST_MESSAGE } from './ssrf.js';

/** Bytes of a receiver's answer read at most (small answers are read whole, so the connection is reused). */
const RESPONSE_READ_LIMIT = 4096;
/** Characters of the answer kept in the attempt log. */
const RESPONSE_EXCERPT_LIMIT = 1024;
const ERROR_LIMIT = 500;

export type DeliveryOutcome = DeliveryNextState['status'];

export interface DispatcherOptions {
  deliveries: Pick<DeliveryRepository, 'claimDue' | 'snapshotPayload' | 'recordAttempts' | 'release'>;
  /** The video a first attempt's body is built from. */
  videos: Pick<VideoRepository, 'get'>;
  bus: EventBus;
  clock: Clock;
  random: Random;
  clients: Pick<ClientRegistry, 'get'>;
  /** The undici dispatcher deliveries go through: the SSRF-guarded agent (tests may pass a MockAgent). */
  agent: Dispatcher;
  logger: Logger;
  /** WEBHOOK_RETRY_SCHEDULE: delays after the first attempt. */
  retryScheduleMs: readonly number[];
  /** WEBHOOK_TIMEOUT_MS: one whole attempt (connect, answer, the bit of body we read). */
  timeoutMs: number;
  /** Attempts in flight at once, across every dispatcher sharing the store (counted from leased rows). */
  concurrency: number;
  /** Attempts in flight at once toward one receiver (one client's host, any port), on this dispatcher. */
  perHostConcurrency: number;
  /** Attempts in flight at once for one client: its share of the pool. Default `ceil(concurrency / 4)`. */
  perClientConcurrency?: number;
  /** A claimed delivery is reclaimable after this long; longer than an attempt can take. Default 2 × timeout + 1 s. */
  leaseMs?: number;
  /** How often the background loop looks for due deliveries. Default 250 ms. */
  tickMs?: number;
  /** Measures attempt durations (monotonic). Default `performance.now`. */
  monotonic?: () => number;
  /** Metrics hook, called once per recorded attempt. */
  onDelivery?: (outcome: DeliveryOutcome, durationMs: number) => void;
}

/**
 * Sends due webhook deliveries. `stop(graceMs)`: after the grace the attempts still running are aborted and their
 * deliveries given back (due again at once, no attempt counted), so shutdown is bounded.
 */
export type WebhookDispatcher = ClaimingWorker;

/** The longest a receiver that keeps timing out waits between attempts. */
const MAX_RECEIVER_COOLDOWN_MS = 5 * 60_000;

/** The receiver a delivery goes to: its client and its callback's host name, without the port. */
export function receiverKey(clientId: string, targetUrl: string | null): string {
  let hostname = '';
  if (targetUrl !== null) {
    try {
      hostname = new URL(targetUrl).hostname;
    } catch {
      // Not a URL: the attempt fails for good in `prepare`; group it under the empty host.
    }
  }
  return `${clientId} ${hostname}`;
}

/** How long a receiver waits after its `streak`-th timeout in a row (pure, for tests). */
export function receiverCooldownMs(timeoutMs: number, streak: number): number {
  return Math.min(MAX_RECEIVER_COOLDOWN_MS, timeoutMs * 2 ** Math.min(20, Math.max(0, streak - 1)));
}

interface Prepared {
  url: URL;
  secret: string;
  body: string;
}

export function createDispatcher(options: DispatcherOptions): WebhookDispatcher {
  const { deliveries, videos, bus, clock, logger, agent, timeoutMs } = options;
  const leaseMs = options.leaseMs ?? 2 * timeoutMs + 1000;
  const monotonic = options.monotonic ?? (() => performance.now());
  const inFlight = new Set<Promise<void>>();
  const inFlightByHost = new Map<string, number>();
  const inFlightByClient = new Map<string, number>();
  const perClientConcurrency = Math.max(1, options.perClientConcurrency ?? Math.ceil(options.concurrency / 4));
  /** Receivers that timed out: consecutive timeouts and the moment the next attempt may start. */
  const cooling = new Map<string, { streak: number; until: number }>();
  /** Aborted when `stop()`'s grace runs out: ends the attempts still in flight. */
  let shutdown = new AbortController();
  /** Outcomes finished in the same moment share one transaction (at 1,000 deliveries/s, one commit each is the cost). */
  const recordAttempt = createWriteBatcher((results: readonly DeliveryAttemptResult[]) => deliveries.recordAttempts(results));

  const hostLoad = (host: string): number => inFlightByHost.get(host) ?? 0;
  const clientLoad = (clientId: string): number => inFlightByClient.get(clientId) ?? 0;
  const adjust = (loads: Map<string, number>, key: string, delta: number): void => {
    const load = (loads.get(key) ?? 0) + delta;
    if (load <= 0) loads.delete(key);
    else loads.set(key, load);
  };
  const isCooling = (receiver: string, now: number): boolean => {
    const state = cooling.get(receiver);
    return state !== undefined && state.until > now;
  };
  /** After an attempt: a timeout starts (or lengthens) the receiver's cooldown, any answer ends it. */
  const noteAnswer = (receiver: string, timedOut: boolean, now: number): void => {
    if (!timedOut) {
      cooling.delete(receiver);
      return;
    }
    const streak = (cooling.get(receiver)?.streak ?? 0) + 1;
    cooling.set(receiver, { streak, until: now + receiverCooldownMs(timeoutMs, streak) });
  };

  /** The body (snapshotted at the first attempt), URL and secret; or why the event can never be sent. */
  const prepare = async (claimed: ClaimedDelivery): Promise<Prepared | { stop: string } | null> => {
    const client = options.clients.get(claimed.clientId);
    if (client === undefined) return { stop: 'the client that owns this video is no longer configured' };
    if (claimed.targetUrl === null) return { stop: 'the video has no callback URL' };
    let body = claimed.payload;
    if (body === null) {
      const video = await videos.get(claimed.videoId);
      if (video === undefined) return null;
      const snapshot = await deliveries.snapshotPayload(
        claimed.messageId,
        buildWebhookPayload(claimed.eventType, claimed.createdAt, video),
      );
      // Erased between the read and the snapshot: its body must not go out.
      if (snapshot === undefined) return null;
      body = snapshot;
    }
    return { url: new URL(claimed.targetUrl), secret: client.webhookSecret, body };
  };

  /** One POST under the attempt deadline. */
  const send = async (prepared: Prepared, claimed: ClaimedDelivery, at: number) => {
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal = AbortSignal.any([deadline, shutdown.signal]);
    try {
      const response = await agent.request({
        origin: prepared.url.origin,
        // Path and query only: a fragment is never sent.
        path: `${prepared.url.pathname}${prepared.url.search}`,
        method: 'POST',
        headers: { ...signWebhook(prepared.secret, claimed.messageId, at, prepared.body), 'user-agent': 'video-gateway-webhooks/1' },
        body: prepared.body,
        signal,
      });
      const excerpt = await readExcerpt(response.body);
      const outcome = classifyResponse(
        response.statusCode,
        { retryAfter: response.headers['retry-after'], location: response.headers['location'] },
        clock.now(),
      );
      return { outcome, responseStatus: response.statusCode, excerpt, timedOut: false };
    } catch (error) {
      if (shutdown.signal.aborted) return 'interrupted' as const;
      // Our deadline and undici's headers/body timeouts (same length) race: either way, the receiver was too slow.
      const timedOut = deadline.aborted || isUndiciTimeout(error);
      const reason = timedOut ? `no answer within ${timeoutMs} ms` : describeNetworkError(error);
      return { outcome: networkFailure(reason), responseStatus: null, excerpt: null, timedOut };
    }
  };

  const nextState = (outcome: AttemptOutcome, claimed: ClaimedDelivery, now: number): DeliveryNextState => {
    if (outcome.kind === 'delivered') return { status: 'delivered', nextAttemptAt: null };
    if (outcome.kind === 'stop') return { status: 'failed', nextAttemptAt: null };
    const next = nextAttemptAt({
      now,
      failedAttempts: claimed.attemptsInSeries + 1,
      scheduleMs: options.retryScheduleMs,
      retryAfterMs: outcome.retryAfterMs,
      random: options.random,
    });
    return next === null ? { status: 'failed', nextAttemptAt: null } : { status: 'retrying', nextAttemptAt: next };
  };

  const deliver = async (claimed: ClaimedDelivery): Promise<void> => {
    const prepared = await prepare(claimed);
    if (prepared === null) return; // the video was erased, and its outbox rows with it
    const at = clock.now();
    const started = monotonic();
    const sent =
      'stop' in prepared
        ? { outcome: permanentFailure(prepared.stop), responseStatus: null, excerpt: null, timedOut: false }
        : await send(prepared, claimed, at);
    if (sent === 'interrupted') {
      await deliveries.release(claimed.messageId, claimed.leaseUntil);
      logger.info(
        { videoId: claimed.videoId, messageId: claimed.messageId },
        'webhook attempt interrupted by shutdown; it will be sent again',
      );
      return;
    }
    const durationMs = Math.round(monotonic() - started);
    const now = clock.now();
    if (!('stop' in prepared)) noteAnswer(receiverKey(claimed.clientId, claimed.targetUrl), sent.timedOut, now);
    const next = nextState(sent.outcome, claimed, now);
    const error = sent.outcome.kind === 'delivered' ? null : sent.outcome.error;
    const video = await recordAttempt({
      messageId: claimed.messageId,
      leaseUntil: claimed.leaseUntil,
      attempt: claimed.attempts + 1,
      at,
      durationMs,
      responseStatus: sent.responseStatus,
      error: error === null ? null : truncate(error, ERROR_LIMIT),
      responseExcerpt: sent.excerpt,
      next,
      now,
    });
    const logContext = {
      videoId: claimed.videoId,
      messageId: claimed.messageId,
      eventType: claimed.eventType,
      attempt: claimed.attempts + 1,
      host: claimed.targetHost,
      responseStatus: sent.responseStatus,
      durationMs,
      outcome: next.status,
      ...(error === null ? {} : { error }),
      ...(next.nextAttemptAt === null ? {} : { nextAttemptAt: next.nextAttemptAt }),
    };
    if (next.status === 'delivered') logger.info(logContext, 'webhook delivered');
    else logger.warn(logContext, next.status === 'failed' ? 'webhook failed for good' : 'webhook attempt failed; will retry');
    if (video === undefined) {
      logger.info(
        { videoId: claimed.videoId, messageId: claimed.messageId },
        'webhook row was taken over (redelivery); attempt logged only',
      );
    } else {
      bus.publish({ video });
    }
    try {
      options.onDelivery?.(next.status, durationMs);
    } catch (hookError) {
      logger.warn({ err: hookError }, 'onDelivery hook threw');
    }
  };

  const launch = async (): Promise<Array<Promise<void>>> => {
    const free = options.concurrency - inFlight.size;
    if (free <= 0) return [];
    const busyClients = [...inFlightByClient].filter(([, load]) => load >= perClientConcurrency).map(([clientId]) => clientId);
    const now = clock.now();
    const claimed = await deliveries.claimDue(now, {
      limit: free,
      leaseMs,
      excludeClients: busyClients,
      perClientLimit: perClientConcurrency,
      perHostLimit: options.perHostConcurrency,
      // The same caps counted over every lease in the store, so they hold across replicas sharing it.
      maxInFlight: options.concurrency,
      maxInFlightPerHost: options.perHostConcurrency,
      maxInFlightPerClient: perClientConcurrency,
    });
    const jobs: Array<Promise<void>> = [];
    for (const delivery of claimed) {
      const host = receiverKey(delivery.clientId, delivery.targetUrl);
      if (hostLoad(host) >= options.perHostConcurrency || clientLoad(delivery.clientId) >= perClientConcurrency || isCooling(host, now)) {
        // The receiver or the client is full (or the receiver cools down): give the row back for a later claim.
        await deliveries.release(delivery.messageId, delivery.leaseUntil);
        continue;
      }
      adjust(inFlightByHost, host, 1);
      adjust(inFlightByClient, delivery.clientId, 1);
      const job = deliver(delivery)
        .catch((error: unknown) =>
          logger.error(
            { err: error, videoId: delivery.videoId, messageId: delivery.messageId },
            'webhook attempt crashed; the lease will expire and retry',
          ),
        )
        .finally(() => {
          adjust(inFlightByHost, host, -1);
          adjust(inFlightByClient, delivery.clientId, -1);
          inFlight.delete(job);
          // A slot opened: deliveries waiting for it need not wait for the next tick.
          wake();
        });
      inFlight.add(job);
      jobs.push(job);
    }
    return jobs;
  };

  const claimLoop = createClaimLoop({
    launch,
    tickMs: options.tickMs ?? 250,
    onError: (error) => logger.error({ err: error }, 'claiming due webhook deliveries failed'),
  });
  const wake = (): void => claimLoop.wake();

  // A new or redelivered event shows up as a 'pending' webhook state on the bus: send it without waiting for the tick.
  bus.subscribeAll(({ video }) => {
    if (video?.webhook?.status === 'pending') wake();
  });

  return {
    async tick() {
      const jobs = await launch();
      await Promise.all(jobs);
      return jobs.length;
    },
    start() {
      if (shutdown.signal.aborted) shutdown = new AbortController();
      claimLoop.start();
    },
    async stop(graceMs) {
      await claimLoop.stop();
      const settled = Promise.allSettled([...inFlight]);
      if (graceMs === undefined) {
        await settled;
        return;
      }
      if (!(await settledWithin(settled, graceMs))) {
        logger.warn({ inFlight: inFlight.size }, 'webhook attempts still running at shutdown: aborting them');
        shutdown.abort();
        await Promise.allSettled([...inFlight]);
      }
    },
    wake,
    inFlight: () => inFlight.size,
  };
}

/** Reads the start of an answer (a few KB at most) as text; leaving the loop early destroys the stream. */
async function readExcerpt(body: AsyncIterable<Buffer | Uint8Array | string>): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk);
      chunks.push(buffer);
      size += buffer.length;
      if (size >= RESPONSE_READ_LIMIT) break;
    }
  } catch {
    // The status decided the attempt; a body that breaks off only shortens the excerpt.
  }
  if (size === 0) return null;
  return truncate(Buffer.concat(chunks).subarray(0, RESPONSE_READ_LIMIT).toString('utf8'), RESPONSE_EXCERPT_LIMIT);
}

const NETWORK_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by the receiver',
  EAI_AGAIN: 'DNS lookup failed (temporary)',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  UND_ERR_SOCKET: 'the receiver closed the connection',
  UND_ERR_CONNECT_TIMEOUT: 'connect timeout',
  UND_ERR_HEADERS_TIMEOUT: 'no answer in time',
  UND_ERR_BODY_TIMEOUT: 'answer body stalled',
};

const unresolvedCodes = new Set(['ENOTFOUND', 'EAI_NONAME', 'EAI_NODATA', 'ENODATA']);

const isUndiciTimeout = (error: unknown): boolean => {
  const code = errorCode(error);
  return code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
};

/** A short, secret-free reason for a failure without an answer. */
export function describeNetworkError(error: unknown): string {
  for (let current: unknown = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth++) {
    // The SSRF guard's message says what was refused without naming the address.
    if (isForbiddenAddressError(current)) return current.message;
  }
  const code = errorCode(error);
  // An unknown name reads exactly like one that resolves to a forbidden address.
  if (code !== undefined && unresolvedCodes.has(code)) return UNREACHABLE_HOST_MESSAGE;
  const known = code === undefined ? undefined : NETWORK_ERRORS[code];
  if (known !== undefined) return `${known} (${code})`;
  const message = error instanceof Error ? error.message : String(error);
  return truncate(code === undefined ? message : `${code}: ${message}`, ERROR_LIMIT);
}
