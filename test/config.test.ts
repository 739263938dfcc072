import t, { type Test } from 'tap';

import { type Config, formatConfigProblems, loadConfig, loadConfigOrThrow, redactConfig, sandboxEnabled } from '../src/config.js';
import { formatDuration, parseDuration } from '../src/duration.js';

const defaultSchedule = [5000, 300000, 1800000, 7200000, 18000000, 36000000, 50400000, 72000000, 86400000];

/** The config of `env`, failing the test (with the problems) when it is invalid. */
function configOf(t: Test, env: Record<string, string | undefined>): Config {
  const result = loadConfig(env);
  if (!result.ok) {
    t.fail(`unexpected problems:\n${result.problems.join('\n')}`);
    throw new Error('invalid config');
  }
  return result.config;
}

/** The problems of `env`, failing the test when it is valid. */
function problemsOf(t: Test, env: Record<string, string | undefined>): string[] {
  const result = loadConfig(env);
  if (result.ok) {
    t.fail('expected problems, got a valid config');
    return [];
  }
  return result.problems;
}

t.test('parseDuration', async (t) => {
  const valid: [string, number][] = [
    ['250ms', 250],
    ['5s', 5000],
    ['2m', 120000],
    ['2h', 7200000],
    ['1.5s', 1500],
    ['.5s', 500],
    ['0ms', 0],
    ['0.25m', 15000],
    [' 5s ', 5000],
    ['30d', 2_592_000_000],
    ['1.5d', 129_600_000],
  ];
  for (const [text, ms] of valid) t.equal(parseDuration(text), ms, text);

  t.equal(parseDuration('2000', { bareUnit: 'ms' }), 2000, 'bare number with bareUnit ms');
  t.equal(parseDuration('2.6', { bareUnit: 'ms' }), 3, 'fractional milliseconds round');
  t.equal(parseDuration('2000'), undefined, 'bare number without bareUnit needs a unit');

  for (const text of ['', 'abc', 's', '5 s', '-5s', '+5s', '5D', '5w', '5S', '1e3ms', '1.5.2s', '5sec', '5s5m', '1,5s', 'Infinityms']) {
    t.equal(parseDuration(text), undefined, JSON.stringify(text));
    t.equal(parseDuration(text, { bareUnit: 'ms' }), undefined, `${JSON.stringify(text)} with bareUnit`);
  }
  t.equal(parseDuration('9'.repeat(400) + 'h'), undefined, 'absurdly large → not a duration');

  t.equal(formatDuration(300000), '5m');
  t.equal(formatDuration(7200000), '2h');
  t.equal(formatDuration(1500), '1500ms');
  t.equal(formatDuration(0), '0ms');
  t.equal(formatDuration(2_592_000_000), '30d');
});

t.test('defaults when the environment is empty (sandbox mode)', async (t) => {
  const config = configOf(t, {});
  t.same(config, {
    port: 3000,
    host: '127.0.0.1',
    elkapiApiKey: null,
    elkapiBaseUrl: 'https://api.elkapi.com',
    databaseUrl: 'sqlite:./data/gateway.db',
    sqlitePath: './data/gateway.db',
    postgresUrl: null,
    databasePoolSize: 10,
    gatewaySecret: null,
    clientsFile: null,
    redisUrl: null,
    cacheMaxEntries: 10000,
    pollIntervalMinMs: 2000,
    pollIntervalMaxMs: 15000,
    upstreamCallbackBaseUrl: null,
    pollIntervalMaxWithCallbacksMs: 60000,
    pollConcurrency: 16,
    upstreamMaxRps: 20,
    pollLeaseMs: 60000,
    shutdownGraceMs: 5000,
    taskTimeoutMs: 7200000,
    webhookTimeoutMs: 15000,
    storeLockWaitMs: 5000,
    webhookRetryScheduleMs: defaultSchedule,
    videoRetentionMs: null,
    webhookAllowHttp: false,
    webhookAllowPrivateNetworks: false,
    metricsToken: null,
    http: { requestTimeoutMs: 30000, headersTimeoutMs: 10000, keepAliveTimeoutMs: 72000, connectionTimeoutMs: 120000 },
    logLevel: 'info',
    sandbox: { durationMs: 10000, queueMs: 2000, errorRate: 0, latencyMs: 0 },
  } satisfies Config);
  t.equal(sandboxEnabled(config), true);
  t.strictSame(config.webhookRetryScheduleMs, defaultSchedule);
});

t.test('empty and blank variables count as unset; unrelated variables are ignored', async (t) => {
  const config = configOf(t, { PORT: '', HOST: '   ', ELKAPI_API_KEY: '', LOG_LEVEL: '', PATH: '/bin', FOO: 'bar' });
  t.equal(config.port, 3000);
  t.equal(config.host, '127.0.0.1');
  t.equal(config.elkapiApiKey, null);
  t.equal(config.logLevel, 'info');
});

t.test('every variable is parsed', async (t) => {
  const config = configOf(t, {
    PORT: '8080',
    HOST: '0.0.0.0',
    ELKAPI_API_KEY: ' sk-live-123 ',
    ELKAPI_BASE_URL: 'http://127.0.0.1:4010/relay/',
    DATABASE_URL: 'sqlite:/var/lib/gateway/gw.db',
    DATABASE_POOL_SIZE: '4',
    GATEWAY_SECRET: 'gs-0123456789abcdefghijklmnopqrstuvwxyz',
    CLIENTS_FILE: '/etc/gateway/clients.json',
    REDIS_URL: 'redis://cache.internal:6380/2',
    CACHE_MAX_ENTRIES: '500',
    POLL_INTERVAL_MIN_MS: '250ms',
    POLL_INTERVAL_MAX_MS: '5s',
    UPSTREAM_CALLBACK_BASE_URL: 'https://gw.example.com/base/',
    POLL_INTERVAL_MAX_WITH_CALLBACKS_MS: '2m',
    POLL_CONCURRENCY: '4',
    UPSTREAM_MAX_RPS: '2.5',
    POLL_LEASE_MS: '2m',
    SHUTDOWN_GRACE_MS: '1500',
    TASK_TIMEOUT_MS: '1h',
    WEBHOOK_TIMEOUT_MS: '3000',
    STORE_LOCK_WAIT_MS: '250ms',
    WEBHOOK_RETRY_SCHEDULE: '1s, 2m ,3h',
    VIDEO_RETENTION: '7d',
    WEBHOOK_ALLOW_HTTP: 'TRUE',
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: '1',
    METRICS_TOKEN: 'scrape-me-0123456789',
    REQUEST_TIMEOUT_MS: '20s',
    HEADERS_TIMEOUT_MS: '5s',
    KEEP_ALIVE_TIMEOUT_MS: '61s',
    CONNECTION_TIMEOUT_MS: '2m',
    LOG_LEVEL: 'Debug',
    SANDBOX_DURATION_MS: '1.5s',
    SANDBOX_QUEUE_MS: '100',
    SANDBOX_ERROR_RATE: '0.25',
    SANDBOX_LATENCY_MS: '20ms',
  });
  t.same(config, {
    port: 8080,
    host: '0.0.0.0',
    elkapiApiKey: 'sk-live-123',
    elkapiBaseUrl: 'http://127.0.0.1:4010/relay',
    databaseUrl: 'sqlite:/var/lib/gateway/gw.db',
    sqlitePath: '/var/lib/gateway/gw.db',
    postgresUrl: null,
    databasePoolSize: 4,
    gatewaySecret: 'gs-0123456789abcdefghijklmnopqrstuvwxyz',
    clientsFile: '/etc/gateway/clients.json',
    redisUrl: 'redis://cache.internal:6380/2',
    cacheMaxEntries: 500,
    pollIntervalMinMs: 250,
    pollIntervalMaxMs: 5000,
    upstreamCallbackBaseUrl: 'https://gw.example.com/base',
    pollIntervalMaxWithCallbacksMs: 120000,
    pollConcurrency: 4,
    upstreamMaxRps: 2.5,
    pollLeaseMs: 120000,
    shutdownGraceMs: 1500,
    taskTimeoutMs: 3600000,
    webhookTimeoutMs: 3000,
    storeLockWaitMs: 250,
    webhookRetryScheduleMs: [1000, 120000, 10800000],
    videoRetentionMs: 7 * 86_400_000,
    webhookAllowHttp: true,
    webhookAllowPrivateNetworks: true,
    metricsToken: 'scrape-me-0123456789',
    http: { requestTimeoutMs: 20000, headersTimeoutMs: 5000, keepAliveTimeoutMs: 61000, connectionTimeoutMs: 120000 },
    logLevel: 'debug',
    sandbox: { durationMs: 1500, queueMs: 100, errorRate: 0.25, latencyMs: 20 },
  } satisfies Config);
  t.equal(sandboxEnabled(config), false);
  t.same(redactConfig(config).elkapiApiKey, '(hidden)');
  t.notMatch(JSON.stringify(redactConfig(config)), 'sk-live-123');
  t.notMatch(JSON.stringify(redactConfig(config)), 'scrape-me');
  t.same(problemsOf(t, { METRICS_TOKEN: 'short' }), [
    'METRICS_TOKEN: (hidden) is not a token of at least 16 visible ASCII characters without spaces',
  ]);
  t.equal(redactConfig(config).gatewaySecret, '(hidden)');
  t.notMatch(JSON.stringify(redactConfig(config)), 'gs-0123456789');
  t.equal(redactConfig(configOf(t, {})).elkapiApiKey, null);
});

t.test('booleans', async (t) => {
  for (const [text, value] of [
    ['true', true],
    ['True', true],
    ['1', true],
    ['false', false],
    ['FALSE', false],
    ['0', false],
  ] as const) {
    t.equal(configOf(t, { WEBHOOK_ALLOW_HTTP: text }).webhookAllowHttp, value, text);
  }
  t.same(problemsOf(t, { WEBHOOK_ALLOW_HTTP: 'yes' }), ['WEBHOOK_ALLOW_HTTP: "yes" is not a boolean (use true, false, 1 or 0)']);
});

t.test('durations in *_MS variables', async (t) => {
  t.equal(configOf(t, { TASK_TIMEOUT_MS: '90000' }).taskTimeoutMs, 90000, 'bare number is milliseconds');
  t.equal(configOf(t, { TASK_TIMEOUT_MS: '2h' }).taskTimeoutMs, 7200000);
  t.equal(configOf(t, { WEBHOOK_TIMEOUT_MS: '1.5s' }).webhookTimeoutMs, 1500);
  t.equal(configOf(t, { SANDBOX_LATENCY_MS: '0' }).sandbox.latencyMs, 0, 'zero latency is fine');
  t.same(problemsOf(t, { POLL_INTERVAL_MIN_MS: 'abc' }), ['POLL_INTERVAL_MIN_MS: "abc" is not a duration (use 250ms, 5s, 2m, 2h or 30d)']);
  t.same(problemsOf(t, { WEBHOOK_TIMEOUT_MS: '5 days' }), [
    'WEBHOOK_TIMEOUT_MS: "5 days" is not a duration (use 250ms, 5s, 2m, 2h or 30d)',
  ]);
  t.same(problemsOf(t, { TASK_TIMEOUT_MS: '0' }), ['TASK_TIMEOUT_MS: "0" is out of range (expected a duration from 1ms to 596h)']);
  t.same(
    problemsOf(t, { TASK_TIMEOUT_MS: '1000h' }),
    ['TASK_TIMEOUT_MS: "1000h" is out of range (expected a duration from 1ms to 596h)'],
    'longer than a Node timer can hold',
  );
});

t.test('VIDEO_RETENTION: unset keeps videos; a duration with a unit, at least 1m', async (t) => {
  t.equal(configOf(t, {}).videoRetentionMs, null, 'unset: keep');
  t.equal(configOf(t, { VIDEO_RETENTION: '30d' }).videoRetentionMs, 30 * 86_400_000);
  t.equal(configOf(t, { VIDEO_RETENTION: '36h' }).videoRetentionMs, 36 * 3_600_000);
  t.equal(configOf(t, { VIDEO_RETENTION: '3650d' }).videoRetentionMs, 3650 * 86_400_000, 'longer than a timer can hold is fine');
  t.same(problemsOf(t, { VIDEO_RETENTION: '30' }), ['VIDEO_RETENTION: "30" is not a duration with a unit (use e.g. 30d, 12h or 90m)']);
  t.same(problemsOf(t, { VIDEO_RETENTION: '30 days' }), [
    'VIDEO_RETENTION: "30 days" is not a duration with a unit (use e.g. 30d, 12h or 90m)',
  ]);
  t.same(problemsOf(t, { VIDEO_RETENTION: '30s' }), ['VIDEO_RETENTION: "30s" is out of range (expected a duration of at least 1m)']);
});

t.test('*_MS variables take days too', async (t) => {
  t.equal(configOf(t, { TASK_TIMEOUT_MS: '1d' }).taskTimeoutMs, 86_400_000);
  t.same(configOf(t, { WEBHOOK_RETRY_SCHEDULE: '5s,1d' }).webhookRetryScheduleMs, [5000, 86_400_000]);
});

t.test('webhook retry schedule', async (t) => {
  t.same(configOf(t, { WEBHOOK_RETRY_SCHEDULE: '0ms' }).webhookRetryScheduleMs, [0]);
  const twenty = Array.from({ length: 20 }, () => '1s').join(',');
  t.equal(configOf(t, { WEBHOOK_RETRY_SCHEDULE: twenty }).webhookRetryScheduleMs.length, 20);

  const [bare] = problemsOf(t, { WEBHOOK_RETRY_SCHEDULE: '5,300' });
  t.match(bare, /^WEBHOOK_RETRY_SCHEDULE: "5,300" is not a comma-separated list of durations .*needs a unit/);
  for (const text of ['5s,', ',5s', '5s,,5m', '5s;5m', '5s,abc']) {
    t.equal(problemsOf(t, { WEBHOOK_RETRY_SCHEDULE: text }).length, 1, text);
  }
  t.same(
    problemsOf(t, { WEBHOOK_RETRY_SCHEDULE: `${twenty},1s` }).map((line) => line.replace(/".*"/, '…')),
    ['WEBHOOK_RETRY_SCHEDULE: … is out of range (expected 1 to 20 durations, each at most 596h)'],
  );
  t.equal(problemsOf(t, { WEBHOOK_RETRY_SCHEDULE: '5s,700h' }).length, 1, 'an entry beyond 596h');
});

t.test('numeric ranges', async (t) => {
  t.equal(configOf(t, { PORT: '0' }).port, 0, 'port 0 = any free port');
  t.equal(configOf(t, { PORT: '65535' }).port, 65535);
  t.same(problemsOf(t, { PORT: '65536' }), ['PORT: "65536" is out of range (expected a port from 0 to 65535)']);
  t.same(problemsOf(t, { PORT: '80.5' }), ['PORT: "80.5" is not a whole number']);
  t.same(problemsOf(t, { PORT: '-1' }), ['PORT: "-1" is not a whole number']);

  t.equal(configOf(t, { POLL_CONCURRENCY: '1' }).pollConcurrency, 1);
  t.equal(configOf(t, { POLL_CONCURRENCY: '1000' }).pollConcurrency, 1000);
  t.same(problemsOf(t, { POLL_CONCURRENCY: '1001' }), ['POLL_CONCURRENCY: "1001" is out of range (expected an integer from 1 to 1000)']);

  t.equal(configOf(t, { UPSTREAM_MAX_RPS: '0.5' }).upstreamMaxRps, 0.5);
  t.same(problemsOf(t, { UPSTREAM_MAX_RPS: '0' }), ['UPSTREAM_MAX_RPS: "0" is out of range (expected a number greater than 0)']);
  t.same(problemsOf(t, { UPSTREAM_MAX_RPS: 'fast' }), ['UPSTREAM_MAX_RPS: "fast" is not a number']);

  t.same(problemsOf(t, { CACHE_MAX_ENTRIES: '0' }), ['CACHE_MAX_ENTRIES: "0" is out of range (expected an integer of at least 1)']);

  t.equal(configOf(t, { SANDBOX_ERROR_RATE: '1' }).sandbox.errorRate, 1);
  t.equal(configOf(t, { SANDBOX_ERROR_RATE: '0' }).sandbox.errorRate, 0);
  t.same(problemsOf(t, { SANDBOX_ERROR_RATE: '1.01' }), ['SANDBOX_ERROR_RATE: "1.01" is out of range (expected a number from 0 to 1)']);
});

t.test('the headers timeout must not exceed the whole-request timeout', async (t) => {
  t.equal(configOf(t, { REQUEST_TIMEOUT_MS: '2s', HEADERS_TIMEOUT_MS: '2s' }).http.headersTimeoutMs, 2000);
  t.same(problemsOf(t, { REQUEST_TIMEOUT_MS: '5s' }), [
    'HEADERS_TIMEOUT_MS: "10000" (10000 ms) is longer than REQUEST_TIMEOUT_MS (5000 ms) (expected HEADERS_TIMEOUT_MS ≤ REQUEST_TIMEOUT_MS)',
  ]);
  t.same(problemsOf(t, { REQUEST_TIMEOUT_MS: '0' }), ['REQUEST_TIMEOUT_MS: "0" is out of range (expected a duration from 1ms to 596h)']);
});

t.test('poll interval minimum must not exceed the maximum', async (t) => {
  t.equal(configOf(t, { POLL_INTERVAL_MIN_MS: '5s', POLL_INTERVAL_MAX_MS: '5s' }).pollIntervalMaxMs, 5000);
  t.same(problemsOf(t, { POLL_INTERVAL_MIN_MS: '20s' }), [
    'POLL_INTERVAL_MIN_MS: "20s" (20000 ms) is longer than POLL_INTERVAL_MAX_MS (15000 ms) (expected POLL_INTERVAL_MIN_MS ≤ POLL_INTERVAL_MAX_MS)',
  ]);
  t.equal(problemsOf(t, { POLL_INTERVAL_MIN_MS: '1s', POLL_INTERVAL_MAX_MS: '500ms' }).length, 1);
  t.same(
    problemsOf(t, { POLL_INTERVAL_MIN_MS: '20s', POLL_INTERVAL_MAX_MS: 'x' }),
    ['POLL_INTERVAL_MAX_MS: "x" is not a duration (use 250ms, 5s, 2m, 2h or 30d)'],
    'no comparison against a value that did not parse',
  );
});

t.test('log level', async (t) => {
  for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) {
    t.equal(configOf(t, { LOG_LEVEL: level.toUpperCase() }).logLevel, level);
  }
  t.same(problemsOf(t, { LOG_LEVEL: 'verbose' }), [
    'LOG_LEVEL: "verbose" is not a log level (use fatal, error, warn, info, debug, trace, silent)',
  ]);
});

t.test('upstream base URL', async (t) => {
  t.equal(configOf(t, { ELKAPI_BASE_URL: 'https://api.elkapi.com/' }).elkapiBaseUrl, 'https://api.elkapi.com');
  t.equal(
    configOf(t, { ELKAPI_BASE_URL: 'https://Relay.Example.com:443/v1//' }).elkapiBaseUrl,
    'https://relay.example.com/v1',
    'host lower-cased, default port and trailing slashes dropped',
  );
  t.equal(configOf(t, { ELKAPI_BASE_URL: 'http://127.0.0.1:4010' }).elkapiBaseUrl, 'http://127.0.0.1:4010');
  for (const bad of [
    'ftp://api.elkapi.com',
    'api.elkapi.com',
    'https://',
    'https://api.elkapi.com/?a=1',
    'https://api.elkapi.com/#x',
    'http://[::1',
    'http://:80',
  ]) {
    const problems = problemsOf(t, { ELKAPI_BASE_URL: bad });
    t.equal(problems.length, 1, bad);
    t.match(problems[0], /^ELKAPI_BASE_URL: .* is not an http\(s\) URL/, bad);
  }
  const [withCredentials] = problemsOf(t, { ELKAPI_BASE_URL: 'https://user:hunter2@api.elkapi.com' });
  t.notMatch(withCredentials, 'hunter2', 'credentials in a URL are masked');
  t.match(withCredentials, '"https://***@api.elkapi.com"');
});

t.test('database URL', async (t) => {
  const memory = configOf(t, { DATABASE_URL: 'sqlite::memory:' });
  t.equal(memory.sqlitePath, ':memory:');
  t.equal(memory.databaseUrl, 'sqlite::memory:');
  t.equal(configOf(t, { DATABASE_URL: 'sqlite:gw.db' }).sqlitePath, 'gw.db');
  t.equal(configOf(t, { DATABASE_URL: 'sqlite:///tmp/gw.db' }).sqlitePath, '/tmp/gw.db');

  for (const url of ['postgres://app:s3cret@db:5432/gw', 'postgresql://app:s3cret@db/gw', 'POSTGRES://db/gw']) {
    const config = configOf(t, { DATABASE_URL: url });
    t.equal(config.postgresUrl, url, `${url} selects Postgres`);
    t.equal(config.sqlitePath, null);
  }
  for (const url of ['postgres://app:s3cret@', 'postgres://app:s3cret@db/gw/extra', 'postgres://app:s3cret@[db/gw']) {
    const problems = problemsOf(t, { DATABASE_URL: url });
    t.same(problems, ['DATABASE_URL: is not a valid Postgres URL (expected postgres://user[:password]@host[:port]/database)'], url);
    t.notMatch(problems.join(), 's3cret', 'the password is never echoed');
  }
  t.same(problemsOf(t, { DATABASE_URL: 'mysql://app:s3cret@db/gw' }), [
    'DATABASE_URL: "mysql://***@db/gw" is not a supported database URL (use sqlite:<path>, sqlite::memory: or postgres://user@host:5432/db)',
  ]);
  t.same(problemsOf(t, { DATABASE_POOL_SIZE: '0' }), ['DATABASE_POOL_SIZE: "0" is out of range (expected an integer from 1 to 1000)']);
  t.same(problemsOf(t, { POLL_LEASE_MS: '10ms' }), ['POLL_LEASE_MS: "10ms" is out of range (expected a duration from 1000ms to 596h)']);
  t.same(problemsOf(t, { SHUTDOWN_GRACE_MS: 'soon' }), ['SHUTDOWN_GRACE_MS: "soon" is not a duration (use 250ms, 5s, 2m, 2h or 30d)']);
  t.equal(problemsOf(t, { DATABASE_URL: 'sqlite:' }).length, 1);
  t.equal(problemsOf(t, { DATABASE_URL: 'sqlite://' }).length, 1, 'no path left');
});

t.test('Redis URL: redis:// or rediss://, one clear line otherwise, the password never shown', async (t) => {
  t.equal(configOf(t, {}).redisUrl, null, 'unset: limits per replica');
  t.equal(configOf(t, { REDIS_URL: 'redis://127.0.0.1:6379' }).redisUrl, 'redis://127.0.0.1:6379');
  t.equal(configOf(t, { REDIS_URL: 'rediss://:s3cret@cache.example.com:6380/0' }).redisUrl, 'rediss://:s3cret@cache.example.com:6380/0');
  const expected = 'is not a Redis URL (expected redis://host:6379, rediss://… for TLS, optionally /<db number>)';
  t.equal(
    redactConfig(configOf(t, { REDIS_URL: 'redis://app:s3cret@cache:6379' })).redisUrl,
    'redis://***@cache:6379',
    'masked in the logged config',
  );
  t.same(problemsOf(t, { REDIS_URL: 'localhost:6379' }), [`REDIS_URL: "localhost:6379" ${expected}`]);
  t.same(problemsOf(t, { REDIS_URL: 'http://cache:6379' }), [`REDIS_URL: "http://cache:6379" ${expected}`]);
  t.same(problemsOf(t, { REDIS_URL: 'redis://:s3cret@cache:6379/zero' }), [`REDIS_URL: "redis://***@cache:6379/zero" ${expected}`]);
  t.same(problemsOf(t, { REDIS_URL: 'redis://:s3cret@[bad:6379' }), [`REDIS_URL: "redis://***@[bad:6379" ${expected}`], 'unparsable host');
  t.same(problemsOf(t, { REDIS_URL: 'redis://cache:99999' }), [`REDIS_URL: "redis://cache:99999" ${expected}`], 'port out of range');
});

t.test('several invalid variables: one line each, in DESIGN order, every problem collected', async (t) => {
  const problems = problemsOf(t, {
    PORT: 'eighty',
    POLL_CONCURRENCY: '0',
    LOG_LEVEL: 'loud',
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'maybe',
    SANDBOX_ERROR_RATE: '2',
    TASK_TIMEOUT_MS: '2 hours',
  });
  t.same(
    problems.map((line) => line.slice(0, line.indexOf(':'))),
    ['PORT', 'POLL_CONCURRENCY', 'TASK_TIMEOUT_MS', 'WEBHOOK_ALLOW_PRIVATE_NETWORKS', 'LOG_LEVEL', 'SANDBOX_ERROR_RATE'],
  );
  for (const line of problems) t.notMatch(line, '\n', 'one line');

  const text = formatConfigProblems(problems);
  t.equal(text.split('\n').length, problems.length + 1);
  t.match(text, /^Invalid configuration \(6 problems\):\n {2}PORT: "eighty" is not a whole number\n/);
  t.match(formatConfigProblems(['X: y']), /^Invalid configuration \(1 problem\):/);

  t.throws(() => loadConfigOrThrow({ PORT: 'eighty' }), /Invalid configuration \(1 problem\):\n {2}PORT: "eighty"/);
  t.equal(loadConfigOrThrow({ PORT: '1234' }).port, 1234);
});

t.test('the upstream key never appears in a problem', async (t) => {
  const secrets = ['sk live with spaces', 'sk-\u0001control', 'sk-ünïcode'];
  for (const key of secrets) {
    const problems = problemsOf(t, { ELKAPI_API_KEY: key, PORT: 'x', LOG_LEVEL: 'nope' });
    t.equal(problems.length, 3);
    t.match(problems[1], /^ELKAPI_API_KEY: \(hidden\) /);
    t.notMatch(JSON.stringify(problems), key.slice(0, 6), 'no part of the key is echoed');
  }
  // A valid key alongside other problems is not echoed either.
  t.notMatch(JSON.stringify(problemsOf(t, { ELKAPI_API_KEY: 'sk-valid-key', PORT: '99999' })), 'sk-valid-key');
});

t.test('very long values are shortened in problems', async (t) => {
  const [problem] = problemsOf(t, { HOST: 'x', PORT: '9'.repeat(500) });
  t.ok(problem !== undefined && problem.length < 200, 'line stays readable');
  t.match(problem, /\.\.\."/);
});

t.test('GATEWAY_SECRET: too short or with spaces is one line that never quotes it', async (t) => {
  for (const value of ['short-secret', 'a secret with spaces that is long enough to pass']) {
    const problems = problemsOf(t, { GATEWAY_SECRET: value });
    t.equal(problems.length, 1);
    t.match(problems[0], /^GATEWAY_SECRET: \(hidden\) is too short or contains whitespace \(expected at least 32 random characters/);
    t.notMatch(problems.join('\n'), value);
  }
  t.equal(configOf(t, { GATEWAY_SECRET: '0123456789abcdef0123456789abcdef' }).gatewaySecret, '0123456789abcdef0123456789abcdef');
});

t.test('UPSTREAM_CALLBACK_BASE_URL: an absolute http(s) URL without query, fragment or credentials', async (t) => {
  for (const bad of [
    'gateway.example.com',
    'ftp://gw.example.com',
    'https://gw.example.com/?a=1',
    'https://gw.example.com/#x',
    'https://u:p@gw.example.com',
  ]) {
    const result = loadConfig({ UPSTREAM_CALLBACK_BASE_URL: bad });
    t.notOk(result.ok, bad);
    if (!result.ok) {
      t.equal(result.problems.length, 1);
      t.match(result.problems[0], /^UPSTREAM_CALLBACK_BASE_URL: .* is not an absolute http\(s\) URL/);
      t.notMatch(result.problems[0], 'u:p@', 'credentials are masked');
    }
  }
  t.equal(configOf(t, { UPSTREAM_CALLBACK_BASE_URL: 'http://10.0.0.5:3000' }).upstreamCallbackBaseUrl, 'http://10.0.0.5:3000');
});

t.test('POLL_INTERVAL_MAX_WITH_CALLBACKS_MS may not be shorter than POLL_INTERVAL_MIN_MS', async (t) => {
  const result = loadConfig({ POLL_INTERVAL_MIN_MS: '5s', POLL_INTERVAL_MAX_WITH_CALLBACKS_MS: '1s' });
  t.notOk(result.ok);
  if (!result.ok) t.match(result.problems, [/^POLL_INTERVAL_MAX_WITH_CALLBACKS_MS: "1s" \(1000 ms\) is shorter than POLL_INTERVAL_MIN_MS/]);
});
