import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import SwaggerParser from '@apidevtools/swagger-parser';
import t from 'tap';
import { parse } from 'yaml';

import { renderOpenapiYaml } from '../src/openapi-document.js';
import { startTestGateway } from './helpers/gateway.js';

const run = promisify(execFile);

type OpenApiDocument = Parameters<typeof SwaggerParser.validate>[0];
type Operation = { tags?: string[]; summary?: string; description?: string; security?: unknown[]; responses: Record<string, unknown> };

t.test('the committed openapi.yaml is what the routes produce (run `npm run openapi` after changing routes)', async (t) => {
  const committed = await readFile(new URL('../openapi.yaml', import.meta.url), 'utf8');
  t.equal(committed, await renderOpenapiYaml());
});

t.test('the document validates as OpenAPI and documents every route', async (t) => {
  const document = parse(await readFile(new URL('../openapi.yaml', import.meta.url), 'utf8')) as OpenApiDocument & {
    paths: Record<string, Record<string, Operation>>;
    components: { schemas: Record<string, { examples?: unknown[] }>; securitySchemes: Record<string, unknown> };
  };
  await t.resolves(SwaggerParser.validate(structuredClone(document)), 'valid OpenAPI');
  t.ok(document.components.securitySchemes['bearerAuth'], 'bearer scheme');
  t.match(
    document.components.securitySchemes['endUserAuth'],
    { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
    'end-user JWT scheme',
  );
  t.ok(document.components.schemas['Video']?.examples?.length, 'Video has examples');
  t.ok(document.components.schemas['Problem'], 'Problem documented');
  for (const [path, operations] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      const name = `${method.toUpperCase()} ${path}`;
      t.ok(operation.tags?.length, `${name} is tagged`);
      t.ok(operation.summary, `${name} has a summary`);
      t.ok(operation.description, `${name} has a description`);
      if (path.startsWith('/webhooks')) {
        t.same(operation.security, [{ bearerAuth: [] }], `${name} requires the API key`);
      } else if (path.startsWith('/videos')) {
        if (path.includes('/deliveries')) {
          t.same(operation.security, [{ bearerAuth: [] }], `${name} requires the API key`);
          t.ok(operation.responses['403'], `${name} documents 403 for end users`);
        } else {
          // The events stream alone also takes a stream token (EventSource cannot send Authorization).
          const expected = [{ bearerAuth: [] }, { endUserAuth: [] }, ...(path === '/videos/{id}/events' ? [{ streamToken: [] }] : [])];
          t.same(operation.security, expected, `${name} takes the API key or an end-user JWT`);
        }
        t.ok(operation.responses['401'], `${name} documents 401`);
      }
    }
  }
  t.ok(document.paths['/videos']?.['post'], 'POST /videos');
  t.ok(document.paths['/videos/{id}']?.['get'], 'GET /videos/{id}');
  t.notOk(
    Object.keys(document.paths).some((path) => path.startsWith('/sandbox') || path.startsWith('/docs')),
    'internal routes hidden',
  );
});

t.test('Swagger UI at /docs, the document at /docs/json and /docs/yaml', async (t) => {
  const gw = await startTestGateway(t);
  const ui = await gw.app.inject({ method: 'GET', url: '/docs/' });
  t.equal(ui.statusCode, 200);
  t.match(ui.headers['content-type'], /text\/html/);
  const yaml = await gw.app.inject({ method: 'GET', url: '/docs/yaml' });
  t.equal(yaml.statusCode, 200);
  t.equal(yaml.body, await readFile(new URL('../openapi.yaml', import.meta.url), 'utf8'), '/docs/yaml is openapi.yaml');
  const json = await gw.app.inject({ method: 'GET', url: '/docs/json' });
  t.equal(json.json().openapi, '3.1.0');
});

type Media = { schema?: unknown; example?: { code?: string; status?: number } };
type Response = { headers?: Record<string, unknown>; content?: Record<string, Media> };
const readDocument = async () =>
  parse(await readFile(new URL('../openapi.yaml', import.meta.url), 'utf8')) as {
    paths: Record<string, Record<string, Operation & { parameters?: Array<{ name: string; in: string }> }>>;
    webhooks: Record<string, Record<string, Operation>>;
  };

t.test('redocly lint (recommended rules) finds no error and no warning in openapi.yaml', async (t) => {
  const cli = fileURLToPath(new URL('../node_modules/@redocly/cli/bin/cli.js', import.meta.url));
  const root = fileURLToPath(new URL('..', import.meta.url));
  const { stdout } = await run(process.execPath, [cli, 'lint', 'openapi.yaml', '--format=json'], { cwd: root }).catch(
    (error: { stdout?: string }) => ({ stdout: error.stdout ?? '{}' }),
  );
  const report = JSON.parse(stdout) as {
    totals: { errors: number; warnings: number };
    problems: Array<{ ruleId: string; message: string }>;
  };
  t.same(
    report.problems.map((problem) => `${problem.ruleId}: ${problem.message}`),
    [],
  );
  t.same(report.totals, { errors: 0, warnings: 0, ignored: 0 });
});

t.test('each problem status shows an example with its own code; open routes declare security: []', async (t) => {
  const document = await readDocument();
  for (const [path, operations] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      for (const [status, response] of Object.entries(operation.responses as Record<string, Response>)) {
        const name = `${method.toUpperCase()} ${path} ${status}`;
        t.ok(response.headers?.['x-request-id'], `${name} declares x-request-id`);
        const example = response.content?.['application/problem+json']?.example;
        if (Number(status) < 400 || path === '/readyz') continue; // /readyz answers 503 with its Readiness body
        t.equal(example?.status, Number(status), `${name}: the example has this status`);
      }
      const open = ['/healthz', '/readyz', '/metrics'].includes(path);
      if (open) t.same(operation.security, [], `${method.toUpperCase()} ${path} is open, explicitly`);
    }
  }
  const codeAt = (path: string, method: string, status: string) =>
    (document.paths[path]?.[method]?.responses[status] as Response | undefined)?.content?.['application/problem+json']?.example?.code;
  t.equal(codeAt('/videos', 'post', '401'), 'unauthorized');
  t.equal(codeAt('/videos', 'post', '503'), 'upstream_unavailable');
  t.equal(codeAt('/videos', 'post', '409'), 'idempotency_key_in_use');
  t.equal(codeAt('/videos/{id}/deliveries/redeliver', 'post', '409'), 'video_not_terminal');
  const create409 = JSON.stringify(document.paths['/videos']?.['post']?.responses['409']);
  t.notMatch(create409, /video_not_terminal/, 'a create never answers video_not_terminal');
  t.same(document.webhooks['videoEvent']?.['post']?.security, []);
});

t.test('response headers the gateway sends are declared; If-None-Match is a parameter of GET /videos/{id}', async (t) => {
  const document = await readDocument();
  const headersOf = (path: string, method: string, status: string) =>
    Object.keys((document.paths[path]?.[method]?.responses[status] as Response | undefined)?.headers ?? {}).sort();
  t.same(headersOf('/videos', 'post', '202'), [
    'idempotent-replayed',
    'location',
    'x-ratelimit-limit',
    'x-ratelimit-remaining',
    'x-ratelimit-reset',
    'x-request-id',
  ]);
  t.same(headersOf('/videos', 'post', '429'), [
    'retry-after',
    'x-ratelimit-limit',
    'x-ratelimit-remaining',
    'x-ratelimit-reset',
    'x-request-id',
  ]);
  t.same(headersOf('/videos', 'post', '503'), ['retry-after', 'x-request-id']);
  t.match(headersOf('/videos/{id}', 'get', '200'), ['cache-control', 'etag']);
  t.match(headersOf('/videos/{id}', 'get', '304'), ['cache-control', 'etag']);
  t.ok(
    document.paths['/videos/{id}']?.['get']?.parameters?.some(
      (parameter) => parameter.name === 'if-none-match' && parameter.in === 'header',
    ),
    'If-None-Match declared',
  );
});

t.test('examples never point at a real third-party receiver; the default create example has no callbackUrl', async (t) => {
  const text = await readFile(new URL('../openapi.yaml', import.meta.url), 'utf8');
  t.notMatch(text, /example\.(com|org|net)\b/);
  const document = parse(text) as { components: { schemas: Record<string, { examples?: Array<Record<string, unknown>> }> } };
  t.notOk('callbackUrl' in (document.components.schemas['CreateVideoRequest']?.examples?.[0] ?? {}));
});
