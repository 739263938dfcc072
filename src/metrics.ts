/**
 * Prometheus metrics (prom-client) in a registry of the app's own — not prom-client's global one — so several
 * gateways in one process (tests) never collide. Counts of things that happen are recorded as they happen;
 * levels (videos in flight, cache, circuit) are read from their owners at scrape time.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

import { isTerminal } from './lifecycle.js';
import type { VideoRecord } from './store/records.js';
import type { CircuitState } from './upstream/circuit-breaker.js';
import type { UpstreamCallOutcome, UpstreamOperation } from './upstream/client.js';

/** Where scrape-time values come from; attached once the app's parts exist. */
export interface MetricsSources {
  videosInFlight: () => Promise<number>;
  cacheStats: () => { size: number; hits: number; misses: number };
  circuitState: () => CircuitState;
}

export interface GatewayMetrics {
  readonly registry: Registry;
  /** `text/plain; version=0.0.4; charset=utf-8` */
  readonly contentType: string;
  /** The Prometheus text exposition of every metric. */
  render(): Promise<string>;
  attach(sources: MetricsSources): void;
  /** `route` is the route pattern (`/videos/:id`), never the raw URL, to keep label cardinality bounded. */
  recordHttpRequest(method: string, route: string, statusCode: number, durationMs: number): void;
  /** One HTTP attempt toward the upstream (the upstream client's `onCall` hook). */
  recordUpstreamCall: (operation: UpstreamOperation, outcome: UpstreamCallOutcome, durationMs: number) => void;
  /** A call the circuit breaker refused without reaching the upstream. */
  recordShortCircuit: (operation: UpstreamOperation) => void;
  recordCircuitChange(state: CircuitState): void;
  /** A video's status changed; terminal ones record their time from creation to the terminal state. */
  recordTransition(video: VideoRecord): void;
  /** One webhook delivery attempt (the dispatcher's `onDelivery` hook): outcome such as `delivered`, `failed`. */
  recordWebhookDelivery(outcome: string, durationMs: number): void;
  /** One upstream callback: `valid` (accepted), `invalid` (unknown token) or `throttled` (over the global cap). */
  recordUpstreamCallback(result: 'valid' | 'invalid' | 'throttled'): void;
  /** An upstream callback moved a video's next poll earlier. */
  recordCallbackPoll(): void;
}

const circuitStates: readonly CircuitState[] = ['closed', 'half_open', 'open'];

const seconds = (ms: number): number => Math.max(0, ms) / 1000;

export interface MetricsOptions {
  /** Process metrics (CPU, memory, event loop lag, GC). Default true. */
  defaultMetrics?: boolean;
}

export function createMetrics(options: MetricsOptions = {}): GatewayMetrics {
  const registry = new Registry();
  const registers = [registry];
  let sources: MetricsSources | null = null;
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry });

  const httpDuration = new Histogram({
    name: 'gateway_http_request_duration_seconds',
    help: 'HTTP requests served, by method, route pattern and status code (_count is the number of requests).',
    labelNames: ['method', 'route', 'status_code'] as const,
    // Up to a minute: long-polls (`?wait=60`) are requests too.
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers,
  });

  const upstreamDuration = new Histogram({
    name: 'gateway_upstream_request_duration_seconds',
    help: 'HTTP attempts toward the upstream, by operation (create, query) and outcome (ok or the error kind).',
    labelNames: ['operation', 'outcome'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30],
    registers,
  });

  const shortCircuited = new Counter({
    name: 'gateway_upstream_short_circuited_total',
    help: 'Upstream calls refused by the open circuit breaker without being sent, by operation.',
    labelNames: ['operation'] as const,
    registers,
  });

  const circuitOpens = new Counter({
    name: 'gateway_upstream_circuit_opened_total',
    help: 'Times the upstream circuit breaker opened.',
    registers,
  });

  new Gauge({
    name: 'gateway_upstream_circuit_state',
    help: 'Upstream circuit breaker state: 1 for the current state, 0 for the others.',
    labelNames: ['state'] as const,
    registers,
    collect() {
      const current = sources?.circuitState() ?? 'closed';
      for (const state of circuitStates) this.set({ state }, state === current ? 1 : 0);
    },
  });

  new Gauge({
    name: 'gateway_videos_in_flight',
    help: 'Videos still running (queued or processing).',
    registers,
    async collect() {
      if (sources === null) return;
      // A failing store must not fail the whole scrape: report "unknown".
      this.set(await sources.videosInFlight().catch(() => Number.NaN));
    },
  });

  const timeToTerminal = new Histogram({
    name: 'gateway_video_time_to_terminal_seconds',
    help: 'Time from a video’s creation to its terminal state, by final status.',
    labelNames: ['status'] as const,
    buckets: [5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600, 7200],
    registers,
  });

  const webhookDuration = new Histogram({
    name: 'gateway_webhook_delivery_duration_seconds',
    help: 'Webhook delivery attempts, by outcome (_count is the number of attempts).',
    labelNames: ['outcome'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15],
    registers,
  });

  const upstreamCallbacks = new Counter({
    name: 'gateway_upstream_callbacks_total',
    help: 'Upstream callbacks received, by result (valid, invalid token, throttled by the global cap).',
    labelNames: ['result'] as const,
    registers,
  });

  const callbackPolls = new Counter({
    name: 'gateway_upstream_callback_polls_total',
    help: 'Polls brought forward by an upstream callback (at most one per video per 2 s).',
    registers,
  });

  const pollsPerVideo = new Histogram({
    name: 'gateway_video_polls',
    help: 'Upstream queries a video cost until its terminal state, by final status.',
    labelNames: ['status'] as const,
    buckets: [1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100],
    registers,
  });

  new Counter({
    name: 'gateway_cache_lookups_total',
    help: 'Video reads by LRU cache result (hit, miss).',
    labelNames: ['result'] as const,
    registers,
    collect() {
      if (sources === null) return;
      // The cache keeps its own running totals; mirror them.
      const { hits, misses } = sources.cacheStats();
      this.reset();
      this.inc({ result: 'hit' }, hits);
      this.inc({ result: 'miss' }, misses);
    },
  });

  new Gauge({
    name: 'gateway_cache_entries',
    help: 'Finished videos held in the LRU cache.',
    registers,
    collect() {
      if (sources !== null) this.set(sources.cacheStats().size);
    },
  });

  // One child per (method, route, status) seen: prom-client hashes a label object on every observe(); this
  // looks up one string instead. Bounded like the labels themselves (route patterns, never raw URLs).
  type HttpChild = ReturnType<typeof httpDuration.labels>;
  const httpChildren = new Map<string, HttpChild>();
  const httpChild = (method: string, route: string, statusCode: number): HttpChild => {
    const key = `${method} ${statusCode} ${route}`;
    let child = httpChildren.get(key);
    if (child === undefined) {
      child = httpDuration.labels({ method, route, status_code: String(statusCode) });
      httpChildren.set(key, child);
    }
    return child;
  };

  return {
    registry,
    contentType: registry.contentType,
    render: () => registry.metrics(),
    attach(attached) {
      sources = attached;
    },
    recordHttpRequest(method, route, statusCode, durationMs) {
      httpChild(method, route, statusCode).observe(seconds(durationMs));
    },
    recordUpstreamCall(operation, outcome, durationMs) {
      upstreamDuration.observe({ operation, outcome }, seconds(durationMs));
    },
    recordShortCircuit(operation) {
      shortCircuited.inc({ operation });
    },
    recordCircuitChange(state) {
      if (state === 'open') circuitOpens.inc();
    },
    recordTransition(video) {
      if (video.completedAt === null || !isTerminal(video.status)) return;
      timeToTerminal.observe({ status: video.status }, seconds(video.completedAt - video.createdAt));
      pollsPerVideo.observe({ status: video.status }, video.pollAttempts);
    },
    recordWebhookDelivery(outcome, durationMs) {
      webhookDuration.observe({ outcome }, seconds(durationMs));
    },
    recordUpstreamCallback(result) {
      upstreamCallbacks.inc({ result });
    },
    recordCallbackPoll() {
      callbackPolls.inc();
    },
  };
}
