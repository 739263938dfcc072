import { readFile } from 'node:fs/promises';

import SwaggerParser from '@apidevtools/swagger-parser';
import t from 'tap';
import { parse } from 'yaml';

import { renderOpenapiYaml } from '../src/openapi-document.js';
import { startTestGateway } from './helpers/gateway.js';

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
      if (path.startsWith('/videos')) {
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
