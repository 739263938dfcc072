import type { TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';

import { ConfigValues, type EnvVarName, EnvVars } from '../schemas/config.js';
import { parseDuration } from './duration.js';

/** The validated, typed configuration the app is built from (DESIGN §5); durations in milliseconds, `elkapiApiKey` null in sandbox mode. */
export type Config = ConfigValues;

export type LoadConfigResult = { ok: true; config: Config } | { ok: false; problems: string[] };

const envCheck = TypeCompiler.Compile(EnvVars);
const valuesCheck = TypeCompiler.Compile(ConfigValues);
const envVarNames = Object.keys(EnvVars.properties) as EnvVarName[];

const keyword = (schema: TSchema, name: string): string | undefined => {
  const value: unknown = schema[name];
  return typeof value === 'string' ? value : undefined;
};

interface FieldSource {
  env: EnvVarName;
  expected: string | undefined;
}

/** JSON pointer of each converted field (`/sandbox/errorRate`) → the variable it comes from. */
const fieldSources = new Map<string, FieldSource>();
(function collect(schema: TSchema, pointer: string): void {
  const env = keyword(schema, 'env');
  if (env !== undefined) {
    fieldSources.set(pointer, { env: env as EnvVarName, expected: keyword(schema, 'expected') });
  }
  const properties: unknown = schema['properties'];
  if (typeof properties === 'object' && properties !== null) {
    for (const [key, child] of Object.entries(properties as Record<string, TSchema>)) collect(child, `${pointer}/${key}`);
  }
})(ConfigValues, '');

/** The field source of an error path, looking up through parents (`/webhookRetryScheduleMs/3` → the list). */
function sourceOf(path: string): FieldSource | undefined {
  for (let pointer = path; pointer !== ''; pointer = pointer.slice(0, pointer.lastIndexOf('/'))) {
    const source = fieldSources.get(pointer);
    if (source !== undefined) return source;
  }
  return undefined;
}

/** How a given value appears in a problem: quoted, shortened, credentials masked, the API key never. */
function shown(name: EnvVarName, raw: string): string {
  if (name === 'ELKAPI_API_KEY' || name === 'GATEWAY_SECRET' || name === 'METRICS_TOKEN') return '(hidden)';
  const masked = raw.replace(/\/\/[^/@\s]*@/, '//***@');
  return JSON.stringify(masked.length > 80 ? `${masked.slice(0, 77)}...` : masked);
}

/**
 * Environment → validated, typed Config. Every problem is collected (not only the first), one line each,
 * naming the variable, what was given and what is expected. An empty or blank variable counts as unset.
 */
export function loadConfig(env: NodeJS.ProcessEnv | Record<string, string | undefined>): LoadConfigResult {
  const given: Partial<Record<EnvVarName, string>> = {};
  const normalized: Record<string, string> = {};
  for (const name of envVarNames) {
    const value = env[name]?.trim();
    if (value === undefined || value === '') continue;
    given[name] = value;
    normalized[name] = EnvVars.properties[name]['caseInsensitive'] === true ? value.toLowerCase() : value;
  }

  // One problem per variable (the first found), reported in the order of DESIGN §5.
  const problemOf = new Map<EnvVarName, string>();
  const otherProblems: string[] = [];
  const fail = (name: EnvVarName, problem: string): void => {
    if (!problemOf.has(name)) problemOf.set(name, problem);
  };

  // Step 1: syntax of the raw strings.
  for (const error of [...envCheck.Errors(normalized)]) {
    const name = error.path.slice(1) as EnvVarName;
    const raw = given[name] ?? '';
    fail(name, `${name}: ${shown(name, raw)} ${keyword(error.schema, 'invalid') ?? 'is not valid'}`);
  }
  // Invalid variables fall back to their defaults so the others can still be converted and range-checked.
  for (const name of problemOf.keys()) delete normalized[name];
  const vars: unknown = Value.Default(EnvVars, normalized);
  if (!envCheck.Check(vars)) throw new Error('config: defaults do not satisfy the environment schema');

  // Step 2: convert. The strings are known to be well-formed here.
  const text = (name: EnvVarName): string => vars[name] ?? '';
  const duration = (name: EnvVarName): number => parseDuration(text(name), { bareUnit: 'ms' }) ?? Number.NaN;
  const bool = (name: EnvVarName): boolean => text(name) === 'true' || text(name) === '1';

  let elkapiBaseUrl = text('ELKAPI_BASE_URL');
  try {
    const url = new URL(elkapiBaseUrl);
    elkapiBaseUrl = `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
  } catch {
    fail(
      'ELKAPI_BASE_URL',
      `ELKAPI_BASE_URL: ${shown('ELKAPI_BASE_URL', elkapiBaseUrl)} ${keyword(EnvVars.properties.ELKAPI_BASE_URL, 'invalid')}`,
    );
  }

  let upstreamCallbackBaseUrl: string | null = vars.UPSTREAM_CALLBACK_BASE_URL ?? null;
  if (upstreamCallbackBaseUrl !== null) {
    try {
      const url = new URL(upstreamCallbackBaseUrl);
      upstreamCallbackBaseUrl = `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
    } catch {
      const raw = upstreamCallbackBaseUrl;
      upstreamCallbackBaseUrl = null;
      fail(
        'UPSTREAM_CALLBACK_BASE_URL',
        `UPSTREAM_CALLBACK_BASE_URL: ${shown('UPSTREAM_CALLBACK_BASE_URL', raw)} ${keyword(EnvVars.properties.UPSTREAM_CALLBACK_BASE_URL, 'invalid')}`,
      );
    }
  }

  // `sqlite:<path>`; `sqlite:///abs/path` and `sqlite://rel/path` are read the usual way too.
  // `postgres://` / `postgresql://` select the Postgres store (DESIGN §4.5).
  const databaseUrl = text('DATABASE_URL');
  let sqlitePath: string | null = null;
  let postgresUrl: string | null = null;
  if (/^postgres(?:ql)?:\/\//i.test(databaseUrl)) {
    postgresUrl = databaseUrl;
    if (!isPostgresUrl(databaseUrl)) {
      // Not echoed: a Postgres URL usually carries a password.
      fail('DATABASE_URL', 'DATABASE_URL: is not a valid Postgres URL (expected postgres://user[:password]@host[:port]/database)');
    }
  } else {
    const sqliteRest = databaseUrl.slice('sqlite:'.length);
    sqlitePath = sqliteRest.startsWith('//') ? sqliteRest.slice(2) : sqliteRest;
  }

  const redisUrl = vars.REDIS_URL ?? null;
  if (redisUrl !== null && !problemOf.has('REDIS_URL')) {
    let host = '';
    try {
      host = new URL(redisUrl).hostname;
    } catch {
      /* reported below */
    }
    if (host === '') fail('REDIS_URL', `REDIS_URL: ${shown('REDIS_URL', redisUrl)} ${keyword(EnvVars.properties.REDIS_URL, 'invalid')}`);
  }

  const config: Config = {
    port: Number(text('PORT')),
    host: text('HOST'),
    elkapiApiKey: vars.ELKAPI_API_KEY ?? null,
    elkapiBaseUrl,
    databaseUrl,
    sqlitePath,
    postgresUrl,
    databasePoolSize: Number(text('DATABASE_POOL_SIZE')),
    gatewaySecret: vars.GATEWAY_SECRET ?? null,
    clientsFile: vars.CLIENTS_FILE ?? null,
    redisUrl,
    cacheMaxEntries: Number(text('CACHE_MAX_ENTRIES')),
    pollIntervalMinMs: duration('POLL_INTERVAL_MIN_MS'),
    pollIntervalMaxMs: duration('POLL_INTERVAL_MAX_MS'),
    upstreamCallbackBaseUrl,
    pollIntervalMaxWithCallbacksMs: duration('POLL_INTERVAL_MAX_WITH_CALLBACKS_MS'),
    pollConcurrency: Number(text('POLL_CONCURRENCY')),
    upstreamMaxRps: Number(text('UPSTREAM_MAX_RPS')),
    pollLeaseMs: duration('POLL_LEASE_MS'),
    shutdownGraceMs: duration('SHUTDOWN_GRACE_MS'),
    taskTimeoutMs: duration('TASK_TIMEOUT_MS'),
    webhookTimeoutMs: duration('WEBHOOK_TIMEOUT_MS'),
    storeLockWaitMs: duration('STORE_LOCK_WAIT_MS'),
    webhookRetryScheduleMs: text('WEBHOOK_RETRY_SCHEDULE')
      .split(',')
      .map((entry) => parseDuration(entry) ?? Number.NaN),
    videoRetentionMs: vars.VIDEO_RETENTION === undefined ? null : (parseDuration(vars.VIDEO_RETENTION) ?? Number.NaN),
    webhookAllowHttp: bool('WEBHOOK_ALLOW_HTTP'),
    webhookAllowPrivateNetworks: bool('WEBHOOK_ALLOW_PRIVATE_NETWORKS'),
    metricsToken: vars.METRICS_TOKEN ?? null,
    http: {
      requestTimeoutMs: duration('REQUEST_TIMEOUT_MS'),
      headersTimeoutMs: duration('HEADERS_TIMEOUT_MS'),
      keepAliveTimeoutMs: duration('KEEP_ALIVE_TIMEOUT_MS'),
      connectionTimeoutMs: duration('CONNECTION_TIMEOUT_MS'),
    },
    logLevel: vars.LOG_LEVEL ?? 'info',
    sandbox: {
      durationMs: duration('SANDBOX_DURATION_MS'),
      queueMs: duration('SANDBOX_QUEUE_MS'),
      errorRate: Number(text('SANDBOX_ERROR_RATE')),
      latencyMs: duration('SANDBOX_LATENCY_MS'),
    },
  };

  // Step 3: ranges of the converted values.
  for (const error of valuesCheck.Errors(config)) {
    const source = sourceOf(error.path);
    if (source === undefined) {
      otherProblems.push(`configuration ${error.path}: ${error.message}`); // a field without a source: a bug here
      continue;
    }
    const expected = source.expected === undefined ? '' : ` (expected ${source.expected})`;
    fail(source.env, `${source.env}: ${shown(source.env, given[source.env] ?? '')} is out of range${expected}`);
  }
  if (
    !problemOf.has('POLL_INTERVAL_MIN_MS') &&
    !problemOf.has('POLL_INTERVAL_MAX_MS') &&
    config.pollIntervalMinMs > config.pollIntervalMaxMs
  ) {
    const min = given.POLL_INTERVAL_MIN_MS ?? text('POLL_INTERVAL_MIN_MS');
    fail(
      'POLL_INTERVAL_MIN_MS',
      `POLL_INTERVAL_MIN_MS: ${shown('POLL_INTERVAL_MIN_MS', min)} (${config.pollIntervalMinMs} ms) is longer than ` +
        `POLL_INTERVAL_MAX_MS (${config.pollIntervalMaxMs} ms) (expected POLL_INTERVAL_MIN_MS ≤ POLL_INTERVAL_MAX_MS)`,
    );
  }

  // Node refuses a server whose headers may take longer than the whole request.
  if (
    !problemOf.has('HEADERS_TIMEOUT_MS') &&
    !problemOf.has('REQUEST_TIMEOUT_MS') &&
    config.http.headersTimeoutMs > config.http.requestTimeoutMs
  ) {
    fail(
      'HEADERS_TIMEOUT_MS',
      `HEADERS_TIMEOUT_MS: ${shown('HEADERS_TIMEOUT_MS', given.HEADERS_TIMEOUT_MS ?? text('HEADERS_TIMEOUT_MS'))} ` +
        `(${config.http.headersTimeoutMs} ms) is longer than REQUEST_TIMEOUT_MS (${config.http.requestTimeoutMs} ms) ` +
        '(expected HEADERS_TIMEOUT_MS ≤ REQUEST_TIMEOUT_MS)',
    );
  }
  if (
    !problemOf.has('POLL_INTERVAL_MIN_MS') &&
    !problemOf.has('POLL_INTERVAL_MAX_WITH_CALLBACKS_MS') &&
    config.pollIntervalMinMs > config.pollIntervalMaxWithCallbacksMs
  ) {
    const max = given.POLL_INTERVAL_MAX_WITH_CALLBACKS_MS ?? text('POLL_INTERVAL_MAX_WITH_CALLBACKS_MS');
    fail(
      'POLL_INTERVAL_MAX_WITH_CALLBACKS_MS',
      `POLL_INTERVAL_MAX_WITH_CALLBACKS_MS: ${shown('POLL_INTERVAL_MAX_WITH_CALLBACKS_MS', max)} (${config.pollIntervalMaxWithCallbacksMs} ms) ` +
        `is shorter than POLL_INTERVAL_MIN_MS (${config.pollIntervalMinMs} ms) (expected POLL_INTERVAL_MIN_MS ≤ POLL_INTERVAL_MAX_WITH_CALLBACKS_MS)`,
    );
  }

  const problems = [...envVarNames.flatMap((name) => problemOf.get(name) ?? []), ...otherProblems];
  return problems.length === 0 ? { ok: true, config } : { ok: false, problems };
}

/** A parseable URL with a host and at most one path segment (the database). */
function isPostgresUrl(raw: string): boolean {
  try {
    const url = new URL(raw);
    return url.hostname !== '' && /^\/[^/]*$|^$/.test(url.pathname);
  } catch {
    return false;
  }
}

/** Like loadConfig, but throws an Error whose message is formatConfigProblems(problems). Handy in tests. */
export function loadConfigOrThrow(env: NodeJS.ProcessEnv | Record<string, string | undefined>): Config {
  const result = loadConfig(env);
  if (!result.ok) throw new Error(formatConfigProblems(result.problems));
  return result.config;
}

/** One header line, then one line per problem, for stderr before exiting. */
export function formatConfigProblems(problems: readonly string[]): string {
  const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
  return [`Invalid configuration (${count}):`, ...problems.map((problem) => `  ${problem}`)].join('\n');
}

/** Sandbox mode: no upstream key, the built-in ElkAPI simulator stands in (DESIGN §4.2). */
export const sandboxEnabled = (config: Pick<Config, 'elkapiApiKey'>): boolean => config.elkapiApiKey === null;

type Hidden = '(hidden)' | null;

/** The config as it may be logged: the upstream key, the gateway secret and the metrics token replaced by `(hidden)`, the Redis password masked. */
export function redactConfig(config: Config): Omit<Config, 'elkapiApiKey' | 'gatewaySecret' | 'metricsToken'> & {
  elkapiApiKey: Hidden;
  gatewaySecret: Hidden;
  metricsToken: Hidden;
} {
  const hide = (value: string | null): Hidden => (value === null ? null : '(hidden)');
  return {
    ...config,
    elkapiApiKey: hide(config.elkapiApiKey),
    gatewaySecret: hide(config.gatewaySecret),
    redisUrl: config.redisUrl === null ? null : config.redisUrl.replace(/\/\/[^/@\s]*@/, '//***@'),
    metricsToken: hide(config.metricsToken),
  };
}
