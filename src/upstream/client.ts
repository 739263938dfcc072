/**
 * The ElkAPI client: one undici Pool toward the upstream origin, strict timeouts, a shared rate budget,
 * retries with backoff + full jitter for queries only, and errors that are always `UpstreamError`s whose
 * messages are safe for clients (never HTML, never the key).
 */
import { handleWhen, retry } from 'cockatiel';
import { type Dispatcher, Pool } from 'undici';

import { type Clock, type Random, systemClock } from '../clock.js';
import { errorCode } from '../lib/error-code.js';
import { createSecretScrubber } from '../lib/secrets.js';
import { classifyUpstreamError, isTaskNotExist, SAFE_MESSAGES, unexpectedPayload } from './failures.js';
import { parseGeneration } from './generation.js';
import { RateBudget, realSleep, type SharedRateBudget, type Sleep } from './rate-budget.js';
import {
  type UpstreamClient,
  type UpstreamCreateRequest,
  UpstreamError,
  type UpstreamErrorKind,
  type UpstreamGeneration,
  type UpstreamHeaders,
} from './types.js';

export type UpstreamOperation = 'create' | 'query';
/** `ok`, or the kind of the error the attempt ended with. */
export type UpstreamCallOutcome = 'ok' | UpstreamErrorKind;

/** The subset of a pino / Fastify logger the client uses. */
export interface UpstreamLogger {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface UpstreamClientOptions {
  /** Upstream origin, optionally with a path prefix, e.g. `https://api.elkapi.com`. */
  baseUrl: string;
  apiKey: string;
  /** Connect, headers and body timeouts, and the deadline of one whole attempt. Default 15000. */
  timeoutMs?: number;
  /** Extra attempts for queries on transient failures. Default 3. Creates are never retried. */
  maxRetries?: number;
  /** Exponential backoff base and cap (full jitter). Defaults 250 / 5000. */
  retryBaseDelayMs?: number;
  retryMaxDelayMs?: number;
  /**
   * Longest `Retry-After` the client waits out itself before retrying a query. Longer ones end the call with
   * `rate_limited` / `unavailable` carrying `retryAfterMs`, so the caller (the poller) pauses instead. Default 10000.
   */
  maxRetryAfterMs?: number;
  /** Requests per second toward the upstream, creates and queries together. Default 20; 0 or Infinity = no limit. */
  maxRps?: number;
  /** The budget all replicas share (Redis), taken after this replica's own; `maxRps` still caps this replica. */
  sharedBudget?: SharedRateBudget;
  /**
   * Longest wait of a create for the rate budget. A create that would wait longer is refused at once, without
   * taking a token, with `rate_limited` carrying `retryAfterMs` (the client gets 503 with Retry-After).
   * Queries always wait their turn. Default 10000.
   */
  maxCreateQueueMs?: number;
  /** Pool connections to the upstream. Default 32. */
  connections?: number;
  /** Largest response body read, in bytes. Default 1 MiB. */
  maxResponseBytes?: number;
  random?: Random;
  sleep?: Sleep;
  clock?: Clock;
  /** Replaces the Pool (tests pass an undici MockAgent). Not closed by `close()`: its owner closes it. */
  dispatcher?: Dispatcher;
  /** Called once per HTTP attempt (a retried query reports each attempt), for metrics. */
  onCall?: (op: UpstreamOperation, outcome: UpstreamCallOutcome, durationMs: number) => void;
  logger?: UpstreamLogger;
}

const GENERATIONS_PATH = '/dream-machine/v1/generations';

/** Default deadline of one upstream attempt. */
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 15_000;
/** Default longest wait of a create for the rate budget. */
export const DEFAULT_MAX_CREATE_QUEUE_MS = 10_000;
// A create (never retried) lasts at most these two together (25 s): keep that well under idempotencyInProgressTimeoutMs (60 s, src/videos/idempotency.ts).

/** Full-jitter exponential backoff: uniform in [0, min(max, base · 2^attempt)). `attempt` starts at 0. */
export function backoffDelayMs(attempt: number, baseMs: number, maxMs: number, random: Random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** attempt);
  return Math.floor(random() * ceiling);
}

/** Transient failures a GET may safely repeat: no answer, 408, 5xx, 429. Never 4xx refusals or a bad 2xx payload. */
export function isRetryable(error: UpstreamError): boolean {
  if (error.kind === 'timeout' || error.kind === 'rate_limited') return true;
  if (error.kind !== 'unavailable') return false;
  const status = error.httpStatus;
  return status === null || status === 408 || status >= 500;
}

const TIMEOUT_ERROR_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/**
 * Any failure of an attempt as an UpstreamError. Transport errors carry the URL at most, never request
 * headers, so keeping them as `cause` for operators does not leak the key.
 */
function toUpstreamError(error: unknown, deadlineExpired: boolean): UpstreamError {
  if (error instanceof UpstreamError) return error;
  if (deadlineExpired || TIMEOUT_ERROR_CODES.has(errorCode(error) ?? '')) {
    return new UpstreamError('timeout', SAFE_MESSAGES.timeout, null, null, { cause: error });
  }
  return new UpstreamError('unavailable', SAFE_MESSAGES.unreachable, null, null, { cause: error });
}

class DeadlineExceededError extends Error {
  override readonly name = 'DeadlineExceededError';
}

/** Reads at most `limitBytes`; null when the body is larger (the stream is then destroyed, not read on). */
async function readCappedText(body: Dispatcher.ResponseData['body'], limitBytes: number): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limitBytes) return null; // leaving the loop destroys the stream
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const NOT_JSON: unique symbol = Symbol('not-json');

function parseJson(text: string | null): unknown {
  if (text === null || text.trim() === '') return NOT_JSON;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return NOT_JSON;
  }
}

function splitBaseUrl(baseUrl: string): { origin: string; pathPrefix: string } {
  const url = new URL(baseUrl);
  return { origin: url.origin, pathPrefix: url.pathname.replace(/\/+$/, '') };
}

export function createUpstreamClient(options: UpstreamClientOptions): UpstreamClient {
  const timeoutMs = options.timeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS;
  const maxRetries = options.maxRetries ?? 3;
  const retryBaseDelayMs = options.retryBaseDelayMs ?? 250;
  const retryMaxDelayMs = options.retryMaxDelayMs ?? 5_000;
  const maxRetryAfterMs = options.maxRetryAfterMs ?? 10_000;
  const maxCreateQueueMs = options.maxCreateQueueMs ?? DEFAULT_MAX_CREATE_QUEUE_MS;
  const maxResponseBytes = options.maxResponseBytes ?? 1024 * 1024;
  const random = options.random ?? Math.random;
  const sleep = options.sleep ?? realSleep;
  const clock = options.clock ?? systemClock;
  const { logger } = options;
  const { origin, pathPrefix } = splitBaseUrl(options.baseUrl);
  const budget = new RateBudget({ ratePerSecond: options.maxRps ?? 20, clock, sleep });
  const { sharedBudget } = options;

  const ownsDispatcher = options.dispatcher === undefined;
  const dispatcher: Dispatcher =
    options.dispatcher ??
    new Pool(origin, {
      connections: options.connections ?? 32,
      connectTimeout: timeoutMs,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });

  // The upstream may echo our own key, whatever its shape, in a refusal or a failure reason: never passed on.
  const { scrub } = createSecretScrubber({ exact: [options.apiKey] });

  // Built once; never logged, never attached to an error.
  const baseHeaders = {
    authorization: `Bearer ${options.apiKey}`,
    accept: 'application/json',
    'user-agent': 'video-gateway',
  };

  const reportCall = (op: UpstreamOperation, outcome: UpstreamCallOutcome, durationMs: number): void => {
    try {
      options.onCall?.(op, outcome, durationMs);
    } catch (error) {
      // A broken metrics hook must not turn an upstream success into a failure.
      logger?.warn({ err: error }, 'upstream onCall hook threw');
    }
  };

  /** Turns a complete answer into a generation, or throws the classified error. */
  function interpret(status: number, headers: UpstreamHeaders, text: string | null): UpstreamGeneration {
    const json = parseJson(text);
    if (status >= 200 && status < 300) {
      if (json === NOT_JSON) throw unexpectedPayload(status);
      // Relays sometimes wrap "unknown task" in a 200.
      if (isTaskNotExist(json)) throw new UpstreamError('not_found', SAFE_MESSAGES.notFound, status);
      try {
        return parseGeneration(json, scrub);
      } catch {
        throw unexpectedPayload(status);
      }
    }
    // A non-JSON error answer (an HTML page from a proxy) is classified by its status alone.
    throw classifyUpstreamError(status, json === NOT_JSON ? undefined : json, headers, clock.now(), scrub);
  }

  /** One HTTP exchange under a single deadline covering connect, headers and the whole body. */
  async function exchange(method: 'GET' | 'POST', path: string, payload?: string): Promise<UpstreamGeneration> {
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new DeadlineExceededError('upstream deadline exceeded')), timeoutMs);
    try {
      const response = await dispatcher.request({
        origin,
        path: `${pathPrefix}${path}`,
        method,
        headers: payload === undefined ? baseHeaders : { ...baseHeaders, 'content-type': 'application/json' },
        body: payload ?? null,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: deadline.signal,
      });
      // Always read the body (capped), so the socket goes back to the pool.
      const text = await readCappedText(response.body, maxResponseBytes);
      return interpret(response.statusCode, response.headers, text);
    } catch (error) {
      throw toUpstreamError(error, deadline.signal.aborted);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Waits for the rate budget. A create waits at most `maxCreateQueueMs`: a phone should not hang on a queue, and a
   * create must end well within the idempotency orphan timeout. Refused, it never reaches the upstream.
   */
  async function waitForBudget(op: UpstreamOperation): Promise<void> {
    const refuse = (waitMs: number, shared: boolean): UpstreamError => {
      logger?.warn(
        { op, waitMs, maxCreateQueueMs, shared },
        'create refused: the upstream rate budget (UPSTREAM_MAX_RPS) is booked too far ahead',
      );
      return new UpstreamError('rate_limited', SAFE_MESSAGES.overBudget, null, waitMs);
    };
    let waitedMs = 0;
    if (op === 'query') {
      await budget.acquire();
    } else {
      const { granted, waitMs } = budget.tryReserve(maxCreateQueueMs);
      if (!granted) throw refuse(waitMs, false);
      if (waitMs > 0) await sleep(waitMs);
      waitedMs = waitMs;
    }
    if (sharedBudget === undefined) return;
    const shared = await sharedBudget.take(op === 'query' ? Number.POSITIVE_INFINITY : maxCreateQueueMs - waitedMs);
    if (!shared.granted) throw refuse(waitedMs + shared.waitMs, true);
  }

  /** One attempt: waits for the rate budget, exchanges, reports, logs. */
  async function attempt(
    op: UpstreamOperation,
    method: 'GET' | 'POST',
    path: string,
    logContext: object,
    payload?: string,
  ): Promise<UpstreamGeneration> {
    await waitForBudget(op);
    const startedAt = clock.now();
    try {
      const generation = await exchange(method, path, payload);
      reportCall(op, 'ok', clock.now() - startedAt);
      return generation;
    } catch (error) {
      const upstreamError = toUpstreamError(error, false);
      reportCall(op, upstreamError.kind, clock.now() - startedAt);
      if (upstreamError.kind === 'auth') {
        logger?.error(
          { ...logContext, op, status: upstreamError.httpStatus },
          'ElkAPI refused the gateway key: check ELKAPI_API_KEY (quota, blocked or invalid key)',
        );
      } else {
        logger?.debug({ ...logContext, op, kind: upstreamError.kind, status: upstreamError.httpStatus }, 'upstream call failed');
      }
      throw upstreamError;
    }
  }

  /** A longer Retry-After is not ours to wait out: the call ends and the caller (the poller) pauses instead. */
  const retriesItself = (error: Error): boolean =>
    error instanceof UpstreamError && isRetryable(error) && (error.retryAfterMs === null || error.retryAfterMs <= maxRetryAfterMs);
  // cockatiel decides which failures are retried and how often; the waits are ours (its backoff stays 0), because
  // cockatiel waits on a real setTimeout, which neither tests nor the injected Sleep could drive.
  const queryRetry = retry(handleWhen(retriesItself), { maxAttempts: maxRetries });

  /** How long to wait before retry number `retryIndex` (0-based): the backoff, or the Retry-After when longer. */
  function retryDelayMs(retryIndex: number, error: UpstreamError): number {
    const backoff = backoffDelayMs(retryIndex, retryBaseDelayMs, retryMaxDelayMs, random);
    return error.retryAfterMs === null ? backoff : Math.max(backoff, error.retryAfterMs);
  }

  return {
    async createGeneration(request: UpstreamCreateRequest): Promise<UpstreamGeneration> {
      // Never retried: a lost answer may still have started a paid generation.
      return attempt('create', 'POST', GENERATIONS_PATH, {}, JSON.stringify(request));
    },

    async getGeneration(upstreamId: string): Promise<UpstreamGeneration> {
      if (upstreamId.trim() === '') throw new UpstreamError('not_found', SAFE_MESSAGES.notFound);
      const path = `${GENERATIONS_PATH}/${encodeURIComponent(upstreamId)}`;
      let failed: UpstreamError | undefined;
      // `attempt` counts the retries so far: 0 on the first call.
      return queryRetry.execute(async ({ attempt: retries }) => {
        if (failed !== undefined) {
          const delayMs = retryDelayMs(retries - 1, failed);
          logger?.warn({ upstreamId, kind: failed.kind, status: failed.httpStatus, retry: retries, delayMs }, 'retrying upstream query');
          await sleep(delayMs);
        }
        try {
          return await attempt('query', 'GET', path, { upstreamId });
        } catch (error) {
          if (error instanceof UpstreamError) failed = error;
          throw error;
        }
      });
    },

    async close(): Promise<void> {
      if (ownsDispatcher) await dispatcher.close();
    },
  };
}
