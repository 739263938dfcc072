// What an operator reads: the gateway as a real child process (`npm start`'s entry point) and its own output.
import { join } from 'node:path';

import t from 'tap';
import { request } from 'undici';

import { spawnChildGateway, startChildGateway } from './helpers/child-gateway.js';
import { until } from './helpers/until.js';

const jsonLines = (output: string): Array<Record<string, unknown>> =>
  output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);

// Three child processes compile the gateway with tsx: on a loaded 2-core machine that outlasts tap's default.
t.setTimeout(180_000);

// The children start together: each one compiles the gateway with tsx, which is slow on a busy machine.
// Each in a directory of its own (its data/ with a first-start client and a database).
const dirs = t.testdir({ json: {}, pretty: {}, dev: {} });
const [jsonGateway, prettyGateway, devGateway] = await Promise.all([
  startChildGateway(t, { LOG_FORMAT: 'json' }, { cwd: join(dirs, 'json') }),
  startChildGateway(t, { LOG_FORMAT: 'pretty' }, { cwd: join(dirs, 'pretty') }),
  startChildGateway(
    t,
    { LOG_FORMAT: 'json', WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' },
    { cwd: join(dirs, 'dev') },
  ),
]);

t.test('LOG_FORMAT=json: one line per request with method, URL, route, status, duration and request id', async (t) => {
  const gateway = jsonGateway;
  await request(`${gateway.url}/healthz`, { headers: { 'x-request-id': 'req-log-ok' } }).then((r) => r.body.dump());
  await request(`${gateway.url}/videos?token=st_not-for-logs&limit=5`, { headers: { 'x-request-id': 'req-log-401' } }).then((r) =>
    r.body.dump(),
  );
  await until(() => gateway.output().includes('req-log-401'), 'the second request line');

  const lines = jsonLines(gateway.output());
  const ok = lines.filter((line) => line['reqId'] === 'req-log-ok');
  t.equal(ok.length, 1, 'one line for a request, not two');
  t.match(ok[0], { msg: 'request completed', method: 'GET', url: '/healthz', route: '/healthz', statusCode: 200, responseTime: Number });
  const refused = lines.filter((line) => line['reqId'] === 'req-log-401');
  t.equal(refused.length, 1);
  t.match(refused[0], { method: 'GET', route: '/videos', statusCode: 401, code: 'unauthorized', url: '/videos?token=[redacted]&limit=5' });
  t.notMatch(gateway.output(), /incoming request/);
  t.notMatch(gateway.output(), /st_not-for-logs/, 'a token in the query never reaches the logs');

  const configLine = gateway
    .output()
    .split('\n')
    .find((line) => line.includes('"configuration'));
  t.ok(configLine !== undefined && configLine.length < 400, `the configuration line is short (${configLine?.length ?? 0} chars)`);
  t.notOk(
    lines.some((line) => line['level'] === 40),
    'no dev-only warning when no dev-only switch is on',
  );
});

t.test('LOG_FORMAT=pretty: human lines, the request on one line', async (t) => {
  const gateway = prettyGateway;
  await request(`${gateway.url}/videos/vid_nope`, { headers: { 'x-request-id': 'req-pretty-1' } }).then((r) => r.body.dump());
  await until(() => gateway.output().includes('req-pretty-1'), 'the request line');
  const lines = gateway.output().split('\n');
  const requestLines = lines.filter((line) => line.includes('req-pretty-1'));
  t.equal(requestLines.length, 1);
  t.match(requestLines[0], /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: GET \/videos\/vid_nope → 401 unauthorized \d+\.\d ms \[req-pretty-1\]$/);
  t.same(
    lines.filter((line) => line.startsWith('{')),
    [],
    'no raw JSON lines',
  );
  const configLine = lines.find((line) => line.includes('configuration')) ?? '';
  t.match(configLine, /INFO: configuration \(sandbox; defaults except these\)/);
  t.ok(configLine.length < 300, `the configuration line is short (${configLine.length} chars)`);
});

t.test('each dev-only switch that is on is warned about at start, naming the protection it turns off', async (t) => {
  const gateway = devGateway;
  const warningsOf = () => jsonLines(gateway.output()).filter((line) => line['level'] === 40);
  // pino writes asynchronously: the lines may land just after the "listening" line.
  await until(() => warningsOf().length >= 2, 'two warnings').catch(() => {});
  const warnings = warningsOf();
  t.equal(warnings.length, 2);
  t.match(warnings[0], { msg: /WEBHOOK_ALLOW_HTTP is on: .*unencrypted/ });
  t.match(warnings[1], { msg: /WEBHOOK_ALLOW_PRIVATE_NETWORKS is on: the SSRF guard is off/ });
});

t.test('invalid configuration prints its header once, then one line per problem', async (t) => {
  const child = spawnChildGateway(t, { LOG_FORMAT: 'colour', PORT: 'eighty' }, { cwd: t.testdir() });
  t.equal((await child.exited).code, 1);
  t.equal(
    child.output().trim(),
    [
      'Invalid configuration (2 problems):',
      '  PORT: "eighty" is not a whole number',
      '  LOG_FORMAT: "colour" is not a log format (use pretty or json)',
    ].join('\n'),
  );
});
