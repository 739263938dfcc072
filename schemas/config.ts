import { type Static, Type } from '@sinclair/typebox';

import { Nullable } from './common.js';
import { decimalPattern, durationWithUnitPattern } from './duration-patterns.js';

/*
 * Configuration schemas (DESIGN §5), in two steps:
 *   1. `EnvVars` checks the raw environment strings (syntax) and carries each variable's default;
 *   2. `ConfigValues` checks the converted values (ranges) and names the variable each field comes from.
 * Custom keywords read by src/config.ts to word problems:
 *   `invalid`         — what is wrong when the raw text does not match, e.g. `is not a duration (…)`;
 *   `caseInsensitive` — the raw text is lower-cased before checking (booleans, log level);
 *   `env` / `expected` — on converted fields: the source variable and the accepted range in words.
 */

export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Longest delay a Node timer can hold (2^31 - 1 ms ≈ 596 h); longer ones would fire at once. */
export const maxTimerMs = 2_147_483_647;
export const maxRetryScheduleEntries = 20;

const durationHint = 'is not a duration (use 250ms, 5s, 2m, 2h or 30d)';

const integer = (defaultValue: string, description: string) =>
  Type.Optional(Type.String({ pattern: '^[0-9]+$', default: defaultValue, description, invalid: 'is not a whole number' }));

const decimal = (defaultValue: string, description: string) =>
  Type.Optional(Type.String({ pattern: `^${decimalPattern}$`, default: defaultValue, description, invalid: 'is not a number' }));

/** `*_MS` variables: a duration with a unit, or a bare number of milliseconds. */
const durationMs = (defaultValue: string, description: string) =>
  Type.Optional(
    Type.String({
      pattern: `^${decimalPattern}(?:ms|s|m|h|d)?$`,
      default: defaultValue,
      description,
      invalid: durationHint,
    }),
  );

const boolean = (description: string) =>
  Type.Optional(
    Type.String({
      pattern: '^(?:true|false|1|0)$',
      default: 'false',
      description,
      caseInsensitive: true,
      invalid: 'is not a boolean (use true, false, 1 or 0)',
    }),
  );

export const EnvVars = Type.Object(
  {
    PORT: integer('3000', 'Listen port.'),
    HOST: Type.Optional(
      Type.String({ pattern: '^\\S+$', default: '127.0.0.1', description: 'Listen address.', invalid: 'is not a host name or address' }),
    ),
    ELKAPI_API_KEY: Type.Optional(
      Type.String({
        // It travels in an HTTP header: visible ASCII only, which also catches a pasted newline or space.
        pattern: '^[\\x21-\\x7E]+$',
        description: 'The upstream key; unset → sandbox mode.',
        invalid: 'contains spaces or characters that cannot go in an HTTP header (expected the key exactly as ElkAPI issued it)',
      }),
    ),
    ELKAPI_BASE_URL: Type.Optional(
      Type.String({
        pattern: '^https?://[^\\s/?#@]+(?:/[^\\s?#]*)?$',
        default: 'https://api.elkapi.com',
        description: 'Upstream origin.',
        invalid: 'is not an http(s) URL without credentials, query or fragment (expected e.g. https://api.elkapi.com)',
      }),
    ),
    DATABASE_URL: Type.Optional(
      Type.String({
        pattern: '^(?:sqlite:.+|[Pp][Oo][Ss][Tt][Gg][Rr][Ee][Ss](?:[Qq][Ll])?://.+)$',
        default: 'sqlite:./data/gateway.db',
        description: 'Store: `sqlite:<path>`, `sqlite::memory:`, or `postgres://user@host:5432/db` for several replicas.',
        invalid: 'is not a supported database URL (use sqlite:<path>, sqlite::memory: or postgres://user@host:5432/db)',
      }),
    ),
    DATABASE_POOL_SIZE: integer('10', 'Postgres connections per replica.'),
    GATEWAY_SECRET: Type.Optional(
      Type.String({
        pattern: '^\\S{32,}$',
        description:
          'Keys stream tokens (and other derived keys); unset → generated into data/gateway-secret. Same value on every replica.',
        invalid: 'is too short or contains whitespace (expected at least 32 random characters, e.g. openssl rand -hex 32)',
      }),
    ),
    REDIS_URL: Type.Optional(
      Type.String({
        pattern: '^rediss?://[^\\s/?#]+(?:/[0-9]*)?$',
        description: 'Redis shared by the replicas for rate limits and the upstream budget; unset → limits per replica.',
        invalid: 'is not a Redis URL (expected redis://host:6379, rediss://… for TLS, optionally /<db number>)',
      }),
    ),
    CLIENTS_FILE: Type.Optional(Type.String({ description: 'Client registry (JSON); unset → data/clients.json, created on first start.' })),
    CACHE_MAX_ENTRIES: integer('10000', 'LRU cache size.'),
    POLL_INTERVAL_MIN_MS: durationMs('2000', 'First and shortest poll interval.'),
    POLL_INTERVAL_MAX_MS: durationMs('15000', 'Longest poll interval.'),
    UPSTREAM_CALLBACK_BASE_URL: Type.Optional(
      Type.String({
        pattern: '^https?://[^\\s/?#@]+(?:/[^\\s?#]*)?$',
        description: 'Where the upstream can reach this gateway for its callbacks (a hint to poll now); unset → polling only.',
        invalid: 'is not an absolute http(s) URL without credentials, query or fragment (expected e.g. https://gateway.example.com)',
      }),
    ),
    POLL_INTERVAL_MAX_WITH_CALLBACKS_MS: durationMs('60000', 'Longest poll interval while upstream callbacks are on (safety net).'),
    POLL_CONCURRENCY: integer('16', 'Upstream polls in flight at once.'),
    UPSTREAM_MAX_RPS: decimal('20', 'Requests per second toward the upstream.'),
    POLL_LEASE_MS: durationMs('60000', 'A claimed poll is taken over by another poller after this (a killed replica).'),
    SHUTDOWN_GRACE_MS: durationMs('5000', 'On shutdown, polls and webhook attempts in flight get this long to finish.'),
    TASK_TIMEOUT_MS: durationMs('7200000', 'Running videos fail with `timed_out` after this.'),
    WEBHOOK_TIMEOUT_MS: durationMs('15000', 'Per delivery attempt.'),
    STORE_LOCK_WAIT_MS: durationMs('5000', 'Longest wait for a database locked by another process, then 503 `store_unavailable`.'),
    WEBHOOK_RETRY_SCHEDULE: Type.Optional(
      Type.String({
        pattern: `^${durationWithUnitPattern}(?:\\s*,\\s*${durationWithUnitPattern})*$`,
        default: '5s,5m,30m,2h,5h,10h,14h,20h,24h',
        description: 'Delays after the first attempt, comma-separated.',
        invalid: 'is not a comma-separated list of durations (use e.g. 5s,5m,30m,2h; every entry needs a unit: ms, s, m, h or d)',
      }),
    ),
    WEBHOOK_ALLOW_HTTP: boolean('Allow http:// callback URLs (dev/test only).'),
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: boolean('Allow callbacks to private addresses (dev/test only).'),
    REQUEST_TIMEOUT_MS: durationMs('30000', 'Longest time a client may take to send a whole request (headers and body).'),
    HEADERS_TIMEOUT_MS: durationMs('10000', 'Longest time a client may take to send the request headers.'),
    KEEP_ALIVE_TIMEOUT_MS: durationMs('72000', 'How long an idle keep-alive connection is kept between requests.'),
    METRICS_TOKEN: Type.Optional(
      Type.String({
        pattern: '^[\\x21-\\x7E]{16,}$',
        description: 'When set, `GET /metrics` requires `Authorization: Bearer <token>`.',
        invalid: 'is not a token of at least 16 visible ASCII characters without spaces',
      }),
    ),
    CONNECTION_TIMEOUT_MS: durationMs('120000', 'A connection with no bytes either way for this long is closed.'),
    LOG_LEVEL: Type.Optional(
      Type.Union(
        logLevels.map((level) => Type.Literal(level)),
        {
          default: 'info',
          description: 'pino level.',
          caseInsensitive: true,
          invalid: `is not a log level (use ${logLevels.join(', ')})`,
        },
      ),
    ),
    VIDEO_RETENTION: Type.Optional(
      Type.String({
        pattern: `^${durationWithUnitPattern}$`,
        description: 'Erase terminal videos completed longer ago than this (e.g. `30d`); unset → keep them.',
        invalid: 'is not a duration with a unit (use e.g. 30d, 12h or 90m)',
      }),
    ),
    SANDBOX_DURATION_MS: durationMs('10000', 'Sandbox: time for a video to complete.'),
    SANDBOX_QUEUE_MS: durationMs('2000', 'Sandbox: time a video spends queued.'),
    SANDBOX_ERROR_RATE: decimal('0', 'Sandbox: share of transient 5xx answers.'),
    SANDBOX_LATENCY_MS: durationMs('0', 'Sandbox: latency added to each answer.'),
  },
  // The environment holds every variable of the process; only ours are checked.
  { additionalProperties: true },
);
export type EnvVars = Static<typeof EnvVars>;
export type EnvVarName = keyof typeof EnvVars.properties;

const ms = (env: EnvVarName, minimum: number) =>
  Type.Integer({
    minimum,
    maximum: maxTimerMs,
    env,
    expected: minimum === 0 ? 'a duration of at most 596h' : `a duration from ${minimum}ms to 596h`,
  });

/** The converted configuration: its static type is `Config` (src/config.ts), so schema and type cannot drift. */
export const ConfigValues = Type.Object({
  port: Type.Integer({ minimum: 0, maximum: 65535, env: 'PORT', expected: 'a port from 0 to 65535' }),
  host: Type.String({ minLength: 1, env: 'HOST' }),
  elkapiApiKey: Nullable(Type.String({ minLength: 1, env: 'ELKAPI_API_KEY' })),
  elkapiBaseUrl: Type.String({ env: 'ELKAPI_BASE_URL' }),
  databaseUrl: Type.String({ env: 'DATABASE_URL' }),
  /** Path of the SQLite file (from `DATABASE_URL=sqlite:<path>`), or `:memory:`; null with Postgres. */
  sqlitePath: Nullable(Type.String({ minLength: 1, env: 'DATABASE_URL' })),
  /** `DATABASE_URL` when it names a Postgres database; null with SQLite. */
  postgresUrl: Nullable(Type.String({ minLength: 1, env: 'DATABASE_URL' })),
  databasePoolSize: Type.Integer({ minimum: 1, maximum: 1000, env: 'DATABASE_POOL_SIZE', expected: 'an integer from 1 to 1000' }),
  /** GATEWAY_SECRET; null → generated into `data/gateway-secret` (src/secrets/gateway-secret.ts). */
  gatewaySecret: Nullable(Type.String({ minLength: 1, env: 'GATEWAY_SECRET' })),
  /** null → `data/clients.json`, created with one `default` client on first start. */
  clientsFile: Nullable(Type.String({ minLength: 1, env: 'CLIENTS_FILE' })),
  /** null → rate limits and the upstream budget are counted per replica. */
  redisUrl: Nullable(Type.String({ minLength: 1, env: 'REDIS_URL' })),
  cacheMaxEntries: Type.Integer({
    minimum: 1,
    maximum: Number.MAX_SAFE_INTEGER,
    env: 'CACHE_MAX_ENTRIES',
    expected: 'an integer of at least 1',
  }),
  pollIntervalMinMs: ms('POLL_INTERVAL_MIN_MS', 1),
  pollIntervalMaxMs: ms('POLL_INTERVAL_MAX_MS', 1),
  /** UPSTREAM_CALLBACK_BASE_URL without a trailing slash; null → no upstream callbacks. */
  upstreamCallbackBaseUrl: Nullable(Type.String({ minLength: 1, env: 'UPSTREAM_CALLBACK_BASE_URL' })),
  pollIntervalMaxWithCallbacksMs: ms('POLL_INTERVAL_MAX_WITH_CALLBACKS_MS', 1),
  pollConcurrency: Type.Integer({
    minimum: 1,
    maximum: 1000,
    env: 'POLL_CONCURRENCY',
    expected: 'an integer from 1 to 1000',
  }),
  upstreamMaxRps: Type.Number({
    exclusiveMinimum: 0,
    maximum: 1_000_000,
    env: 'UPSTREAM_MAX_RPS',
    expected: 'a number greater than 0',
  }),
  pollLeaseMs: ms('POLL_LEASE_MS', 1000),
  shutdownGraceMs: ms('SHUTDOWN_GRACE_MS', 0),
  taskTimeoutMs: ms('TASK_TIMEOUT_MS', 1),
  webhookTimeoutMs: ms('WEBHOOK_TIMEOUT_MS', 1),
  storeLockWaitMs: ms('STORE_LOCK_WAIT_MS', 0),
  webhookRetryScheduleMs: Type.Array(Type.Integer({ minimum: 0, maximum: maxTimerMs }), {
    minItems: 1,
    maxItems: maxRetryScheduleEntries,
    env: 'WEBHOOK_RETRY_SCHEDULE',
    expected: `1 to ${maxRetryScheduleEntries} durations, each at most 596h`,
  }),
  /** null → videos are kept. */
  videoRetentionMs: Nullable(Type.Integer({ minimum: 60_000, maximum: Number.MAX_SAFE_INTEGER }), {
    env: 'VIDEO_RETENTION',
    expected: 'a duration of at least 1m',
  }),
  webhookAllowHttp: Type.Boolean({ env: 'WEBHOOK_ALLOW_HTTP' }),
  webhookAllowPrivateNetworks: Type.Boolean({ env: 'WEBHOOK_ALLOW_PRIVATE_NETWORKS' }),
  /** Bearer token `GET /metrics` requires; null → open (listen on a private address). */
  metricsToken: Nullable(Type.String({ minLength: 16, env: 'METRICS_TOKEN' })),
  /** Node/Fastify server timeouts against slow or idle clients (issue 13). */
  http: Type.Object({
    requestTimeoutMs: ms('REQUEST_TIMEOUT_MS', 1),
    headersTimeoutMs: ms('HEADERS_TIMEOUT_MS', 1),
    keepAliveTimeoutMs: ms('KEEP_ALIVE_TIMEOUT_MS', 1),
    connectionTimeoutMs: ms('CONNECTION_TIMEOUT_MS', 1),
  }),
  logLevel: Type.Union(
    logLevels.map((level) => Type.Literal(level)),
    { env: 'LOG_LEVEL' },
  ),
  sandbox: Type.Object({
    durationMs: ms('SANDBOX_DURATION_MS', 0),
    queueMs: ms('SANDBOX_QUEUE_MS', 0),
    errorRate: Type.Number({ minimum: 0, maximum: 1, env: 'SANDBOX_ERROR_RATE', expected: 'a number from 0 to 1' }),
    latencyMs: ms('SANDBOX_LATENCY_MS', 0),
  }),
});
export type ConfigValues = Static<typeof ConfigValues>;
