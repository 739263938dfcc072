/**
 * Hundreds of generated malformed requests at every route: each must answer a 4xx RFC 9457 problem (or, where the
 * input is harmless to ignore, any non-5xx answer), never a 5xx, never a stack trace, and leave the store as it was.
 *
 * Routes come from the app itself (the OpenAPI document for documented routes, an `onRoute` hook for all of them),
 * so routes added later are attacked too, and a route nobody generates cases for fails the coverage check.
 */
import { join } from 'node:path';

import Database from 'better-sqlite3';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import t from 'tap';

import { createClientRegistry } from '../src/auth/clients.js';
import { sampleClips } from '../src/sandbox/assets.js';
import { advanceAndPoll, clientKeys, createVideo, startTestGateway, testClientsFile } from './helpers/gateway.js';

type Expectation = 'problem' | 'not5xx';

interface Case {
  /** `METHOD /route/:pattern` as Fastify names it, for the coverage check. */
  route: string;
  name: string;
  request: InjectOptions;
  expect: Expectation;
}

interface Operation {
  parameters?: Array<{
    in: string;
    name: string;
    schema?: { type?: string; enum?: string[]; minimum?: number; maximum?: number; pattern?: string; maxLength?: number };
  }>;
  requestBody?: unknown;
  security?: unknown[];
}

/** Open routes declare `security: []`; protected ones list a scheme. */
const isProtected = (operation: Operation): boolean => (operation.security?.length ?? 0) > 0;

const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });
const alice = bearer(clientKeys.alice);
const base64url = (text: string): string => Buffer.from(text, 'utf8').toString('base64url');
const nested = (depth: number, leaf: string): string => '{"a":'.repeat(depth) + leaf + '}'.repeat(depth);

const stackTrace = /\bat [^\n]*\.(?:ts|js|mjs|cjs):\d+|node_modules|\/work\/|Error: /;
/** Contents of files a traversal must never reach. */
const leakedFile = /"name":\s*"video-gateway"|root:x:0:0|import \{|^PNG|sqlite format/i;

function problemsWith(response: LightMyRequestResponse, expect: Expectation): string[] {
  const problems: string[] = [];
  const status = response.statusCode;
  if (status >= 500) problems.push(`answered ${status}`);
  if (expect === 'problem' && (status < 400 || status >= 500)) problems.push(`expected a 4xx, got ${status}`);
  if (stackTrace.test(response.body)) problems.push('body shows internals (stack trace or path)');
  if (leakedFile.test(response.body)) problems.push('body leaks a file');
  if (status >= 400) {
    const type = String(response.headers['content-type'] ?? '');
    if (!type.startsWith('application/problem+json')) problems.push(`error content-type ${type}`);
    else {
      const body = response.json<{ code?: unknown; status?: unknown; requestId?: unknown }>();
      if (typeof body.code !== 'string' || !/^[a-z_]+$/.test(body.code)) problems.push('problem without a code');
      if (body.status !== status) problems.push(`problem status ${String(body.status)} ≠ ${status}`);
      if (body.requestId !== response.headers['x-request-id']) problems.push('problem requestId ≠ x-request-id');
    }
  }
  return problems;
}

t.test('malformed requests at every route answer 4xx problems, never 5xx, and change nothing stored', async (t) => {
  // Limits far above the case count: rate limiting must not stand in for validation here.
  const clients = createClientRegistry({
    clients: testClientsFile.clients.map((client) => ({ ...client, rateLimitPerMinute: 1_000_000, createLimitPerMinute: 1_000_000 })),
  });
  const sqlitePath = join(t.testdir(), 'gateway.db');
  /** Every route as Fastify adds it, `METHOD /url` (HEAD twins left out). */
  const routes: string[] = [];
  const onRoute = ({ method, url }: { method: string | string[]; url: string }): void => {
    for (const name of [method].flat()) if (name !== 'HEAD') routes.push(`${name} ${url}`);
  };
  const gw = await startTestGateway(t, { sqlitePath, gateway: { clients, serveSandboxAssets: true, onRoute } });

  // Fixtures: a completed video (no callback, so nothing can be redelivered), a running one, another client's.
  const completed = await createVideo(gw, { prompt: 'A completed video' });
  await advanceAndPoll(gw, 15_000);
  const running = await createVideo(gw, { prompt: 'A running video' });
  const bobs = await createVideo(gw, { prompt: 'Bob’s video' }, 'bob');

  const db = new Database(sqlitePath, { readonly: true });
  t.teardown(() => db.close());
  const tables = db
    .prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
    .all()
    .map((row) => row.name)
    // The one write a probe makes on purpose: /readyz proves the store takes writes.
    .filter((name) => name !== 'store_heartbeat');
  const snapshot = (): string =>
    JSON.stringify(tables.map((table) => [table, db.prepare(`SELECT * FROM "${table}" ORDER BY rowid`).all()]));
  const before = snapshot();
  const upstreamCreatesBefore = gw.sandbox.stats.creates;
  t.ok(before.includes(completed.id) && before.includes(running.id), 'the snapshot sees the stored videos');

  await gw.app.ready();
  const document = gw.app.swagger() as { paths: Record<string, Record<string, Operation>> };
  const operations = Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({
      method: method.toUpperCase() as 'GET' | 'POST',
      template: path,
      route: `${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`,
      operation,
    })),
  );
  const cases: Case[] = [];
  const add = (route: string, name: string, request: InjectOptions, expect: Expectation): void => {
    cases.push({ route, name: `${route} — ${name}`, request, expect });
  };
  const urlFor = (template: string, id: string): string => template.replace('{id}', id);

  // 1. Ids: traversal, encoded slashes, odd unicode, bad percent-encoding, injections, foreign and unknown ids.
  const badIds: Array<[string, string]> = [
    ['blank', '%20'],
    ['dot-dot', '..'],
    ['traversal', '..%2F..%2Fetc%2Fpasswd'],
    ['encoded traversal', '%2e%2e%2f%2e%2e%2fpackage.json'],
    ['backslash traversal', '..%5C..%5Cpackage.json'],
    ['encoded slash in id', `vid_%2F..%2F${completed.id}`],
    ['leading encoded slash', `%2F${completed.id}`],
    ['trailing encoded slash', `${completed.id}%2F`],
    ['NUL', '%00'],
    ['NUL after id', `${completed.id}%00`],
    ['newline after id', `${completed.id}%0A`],
    ['65 chars', 'v'.repeat(65)],
    ['past the router limit', 'v'.repeat(201)],
    ['5000 chars', 'v'.repeat(5000)],
    ['emoji', encodeURIComponent('vid_😀')],
    ['RTL override', encodeURIComponent('vid_\u202Egpj.exe')],
    ['zero-width space', encodeURIComponent(`${completed.id}\u200B`)],
    ['encoded lone surrogate', 'vid_%ED%A0%80'],
    ['truncated percent-encoding', 'vid_%E0%A4%A'],
    ['bare percent', '%'],
    ['invalid percent-encoding', '%zz'],
    ['null', 'null'],
    ['object', '%5Bobject%20Object%5D'],
    ['SQL injection', encodeURIComponent("' OR 1=1 --")],
    ['script', encodeURIComponent('<script>alert(1)</script>')],
    ['unknown well-formed id', 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC'],
    ['another client’s id', bobs.id],
    ['upper-cased id', completed.id.toUpperCase()],
    ['id with semicolon', `${completed.id};x=1`],
  ];
  for (const { method, template, route } of operations.filter((op) => op.template.includes('{id}'))) {
    for (const [name, id] of badIds) add(route, `id: ${name}`, { method, url: urlFor(template, id), headers: alice }, 'problem');
  }

  // 2. Query strings: wrong types, out of range, bad enums, bad cursors, duplicate keys, huge values.
  for (const { method, template, route, operation } of operations) {
    const url = urlFor(template, completed.id);
    const headers = isProtected(operation) ? alice : {};
    const query = (operation.parameters ?? []).filter((parameter) => parameter.in === 'query');
    for (const parameter of query) {
      const schema = parameter.schema ?? {};
      const invalid: string[] = [];
      if (schema.type === 'integer' || schema.type === 'number') {
        invalid.push(
          'abc',
          '1.5',
          'NaN',
          'Infinity',
          '-Infinity',
          '99999999999999999999',
          '1e400',
          '%00',
          'true',
          '%5B%5D',
          '%EF%BC%99',
          '-1',
        );
        if (schema.minimum !== undefined) invalid.push(String(schema.minimum - 1));
        if (schema.maximum !== undefined) invalid.push(String(schema.maximum + 1));
      } else if (schema.enum !== undefined) {
        invalid.push(
          'bogus',
          `${schema.enum[0] ?? 'x'}%00`,
          (schema.enum[0] ?? 'x').toUpperCase(),
          schema.enum.slice(0, 2).join(','),
          'x'.repeat(5000),
        );
      } else {
        // Opaque strings such as cursors: garbage, forged or truncated encodings.
        invalid.push(
          'garbage!!',
          '%00',
          'x'.repeat(5000),
          base64url('{"v":1}'),
          base64url('null'),
          base64url('[]'),
          base64url('{"createdAt":"not a date","id":"../../x"}'),
          'eyJ',
          '..%2F..%2Fetc%2Fpasswd',
          encodeURIComponent('💥'),
        );
      }
      // An id filter (endUserId) is not opaque: a value its pattern accepts is a valid id that matches nothing.
      const validId = (value: string): boolean =>
        parameter.name !== 'cursor' &&
        typeof schema.pattern === 'string' &&
        new RegExp(schema.pattern).test(value) &&
        value.length <= (schema.maxLength ?? Infinity);
      for (const value of invalid)
        add(
          route,
          `?${parameter.name}=${value.slice(0, 40)}`,
          { method, url: `${url}?${parameter.name}=${value}`, headers },
          validId(value) ? 'not5xx' : 'problem',
        );
      add(route, `?${parameter.name} twice`, { method, url: `${url}?${parameter.name}=1&${parameter.name}=bogus`, headers }, 'not5xx');
      add(route, `?${parameter.name}[]`, { method, url: `${url}?${parameter.name}[]=1&${parameter.name}[x]=2`, headers }, 'not5xx');
      add(route, `?${parameter.name}= (empty)`, { method, url: `${url}?${parameter.name}=`, headers }, 'not5xx');
    }
    if (method === 'GET' && !template.endsWith('/events')) {
      add(route, 'unknown query parameter', { method, url: `${url}?__proto__=1&constructor=x`, headers }, 'not5xx');
      add(route, 'huge query string', { method, url: `${url}?x=${'a'.repeat(20_000)}`, headers }, 'not5xx');
      add(route, 'malformed query encoding', { method, url: `${url}?a=%zz&b=%E0%A4%A`, headers }, 'not5xx');
    }
  }

  // 3. Bodies: wrong types, nulls, huge strings, odd unicode, duplicate keys, deep nesting, wrong content types.
  const validBody = { prompt: 'A tiger walking in snow' };
  const badBodies: Array<[string, unknown]> = [
    ['prompt number', { prompt: 12345 }],
    ['prompt null', { prompt: null }],
    ['prompt array', { prompt: ['A tiger walking'] }],
    ['prompt object', { prompt: { text: 'A tiger' } }],
    ['prompt boolean', { prompt: true }],
    ['prompt missing', { aspectRatio: '16:9' }],
    ['prompt too short', { prompt: 'ab' }],
    ['prompt too long', { prompt: 'x'.repeat(5001) }],
    ['prompt only spaces', { prompt: '          ' }],
    ['prompt only line breaks and tabs', { prompt: '\n\t\r\n\t' }],
    ['prompt padded to length with spaces', { prompt: '   a   ' }],
    ['aspectRatio unknown', { ...validBody, aspectRatio: '2:1' }],
    ['aspectRatio number', { ...validBody, aspectRatio: 1.77 }],
    ['aspectRatio null', { ...validBody, aspectRatio: null }],
    ['loop string', { ...validBody, loop: 'true' }],
    ['loop number', { ...validBody, loop: 1 }],
    ['loop null', { ...validBody, loop: null }],
    ['model with spaces', { ...validBody, model: 'ray 2' }],
    ['model traversal', { ...validBody, model: '../../ray' }],
    ['model huge', { ...validBody, model: 'm'.repeat(10_000) }],
    ['model number', { ...validBody, model: 2 }],
    ['resolution unknown', { ...validBody, resolution: '8k' }],
    ['duration number', { ...validBody, duration: 5 }],
    ['duration unknown', { ...validBody, duration: '60s' }],
    ['keyframes string', { ...validBody, keyframes: 'start' }],
    ['keyframes null', { ...validBody, keyframes: null }],
    ['keyframe http URL', { ...validBody, keyframes: { start: { imageUrl: 'http://example.com/a.jpg' } } }],
    ['keyframe javascript URL', { ...validBody, keyframes: { start: { imageUrl: 'javascript:alert(1)' } } }],
    ['keyframe not a URL', { ...validBody, keyframes: { start: { imageUrl: 'https://' } } }],
    ['keyframe URL too long', { ...validBody, keyframes: { start: { imageUrl: `https://example.com/${'a'.repeat(3000)}` } } }],
    ['keyframe both kinds', { ...validBody, keyframes: { start: { imageUrl: 'https://example.com/a.jpg', videoId: completed.id } } }],
    ['keyframe traversal videoId', { ...validBody, keyframes: { end: { videoId: '../../etc/passwd' } } }],
    ['keyframe foreign videoId', { ...validBody, keyframes: { end: { videoId: bobs.id } } }],
    ['keyframe running videoId', { ...validBody, keyframes: { end: { videoId: running.id } } }],
    ['keyframe unknown position', { ...validBody, keyframes: { middle: { imageUrl: 'https://example.com/a.jpg' } } }],
    ['callbackUrl http', { ...validBody, callbackUrl: 'http://example.com/hook' }],
    ['callbackUrl loopback', { ...validBody, callbackUrl: 'https://127.0.0.1/hook' }],
    ['callbackUrl IPv6 loopback', { ...validBody, callbackUrl: 'https://[::1]/hook' }],
    ['callbackUrl metadata service', { ...validBody, callbackUrl: 'https://169.254.169.254/latest/meta-data' }],
    ['callbackUrl userinfo', { ...validBody, callbackUrl: 'https://user:pass@example.com/hook' }],
    ['callbackUrl file', { ...validBody, callbackUrl: 'file:///etc/passwd' }],
    ['callbackUrl relative', { ...validBody, callbackUrl: '/hook' }],
    ['callbackUrl too long', { ...validBody, callbackUrl: `https://example.com/${'a'.repeat(2100)}` }],
    ['callbackUrl number', { ...validBody, callbackUrl: 443 }],
    ['webhookEvents unknown', { ...validBody, webhookEvents: ['video.deleted'] }],
    ['webhookEvents duplicated', { ...validBody, webhookEvents: ['video.completed', 'video.completed'] }],
    ['webhookEvents empty', { ...validBody, webhookEvents: [] }],
    ['webhookEvents string', { ...validBody, webhookEvents: 'video.completed' }],
    ['metadata array', { ...validBody, metadata: ['a'] }],
    ['metadata number value', { ...validBody, metadata: { userId: 42 } }],
    ['metadata null value', { ...validBody, metadata: { userId: null } }],
    ['metadata nested', { ...validBody, metadata: { user: { id: 'u_1' } } }],
    ['metadata 21 keys', { ...validBody, metadata: Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, 'v'])) }],
    ['metadata value 501 chars', { ...validBody, metadata: { note: 'n'.repeat(501) } }],
    ['metadata empty key', { ...validBody, metadata: { '': 'v' } }],
    ['metadata key 101 chars', { ...validBody, metadata: { ['k'.repeat(101)]: 'v' } }],
    ['unknown field', { ...validBody, aspect_ratio: '16:9' }],
    ['unknown nested field', { ...validBody, keyframes: { start: { imageUrl: 'https://example.com/a.jpg', weight: 1 } } }],
  ];
  const rawBodies: Array<[string, string]> = [
    ['duplicate key, last invalid', '{"prompt":"A tiger walking in snow","prompt":123}'],
    ['duplicate key in metadata, last invalid', '{"prompt":"A tiger walking in snow","metadata":{"a":"x","a":1}}'],
    ['__proto__ key', '{"prompt":"A tiger walking in snow","__proto__":{"admin":true}}'],
    ['constructor.prototype', '{"prompt":"A tiger walking in snow","constructor":{"prototype":{"admin":true}}}'],
    ['deeply nested metadata', `{"prompt":"A tiger walking in snow","metadata":${nested(5000, '"x"')}}`],
    ['deeply nested arrays', `${'['.repeat(20_000)}${']'.repeat(20_000)}`],
    ['lone surrogate escape in prompt (only one char)', '{"prompt":"\\ud800"}'],
    ['NUL escapes only', '{"prompt":"\\u0000\\u0000"}'],
    ['truncated JSON', '{"prompt": "A tiger'],
    ['trailing comma', '{"prompt": "A tiger walking",}'],
    ['single quotes', "{'prompt': 'A tiger walking'}"],
    ['JSON null', 'null'],
    ['JSON array', '[{"prompt":"A tiger walking"}]'],
    ['JSON string', '"A tiger walking in snow"'],
    ['JSON number', '42'],
    ['empty body', ''],
    ['whitespace body', '   \n  '],
    ['NaN literal', '{"prompt": NaN}'],
    ['comment', '{"prompt": "A tiger walking" /* hi */}'],
    ['over 64 KiB', JSON.stringify({ prompt: 'x'.repeat(70_000) })],
  ];
  const contentTypes: Array<[string, string, string | Buffer]> = [
    ['text/plain', 'text/plain', JSON.stringify(validBody)],
    ['form-urlencoded', 'application/x-www-form-urlencoded', 'prompt=A+tiger+walking'],
    ['multipart', 'multipart/form-data; boundary=x', '--x\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nA tiger\r\n--x--'],
    ['XML', 'application/xml', '<prompt>A tiger walking</prompt>'],
    ['octet-stream', 'application/octet-stream', JSON.stringify(validBody)],
    ['lookalike type', 'application/jsonx', JSON.stringify(validBody)],
    ['UTF-16 body', 'application/json; charset=utf-16', Buffer.from(JSON.stringify(validBody), 'utf16le')],
    ['garbage content type', ';;;==', JSON.stringify(validBody)],
    [
      'invalid UTF-8 bytes',
      'application/json',
      Buffer.concat([Buffer.from('{"prompt":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from(' bytes"}')]),
    ],
  ];
  for (const { method, template, route, operation } of operations.filter((op) => op.method === 'POST')) {
    const url = urlFor(template, completed.id);
    const headers = isProtected(operation) ? alice : {};
    const isCreate = template === '/videos';
    const bodies = isCreate ? badBodies : badBodies.slice(0, 6);
    for (const [name, payload] of bodies) add(route, `body: ${name}`, { method, url, headers, payload: payload as object }, 'problem');
    // Routes that take no body accept none, an empty one or `{}` (and `null`, read as none): test/conventions.test.ts.
    const takesNoBody = template.endsWith('/stream-tokens') || template.endsWith('/redeliver');
    const raw = isCreate ? rawBodies : rawBodies.slice(8);
    for (const [name, payload] of takesNoBody ? raw.filter(([, body]) => body !== 'null' && body !== '') : raw) {
      add(route, `raw body: ${name}`, { method, url, headers: { ...headers, 'content-type': 'application/json' }, payload }, 'problem');
    }
    for (const [name, type, payload] of contentTypes) {
      add(route, `content-type: ${name}`, { method, url, headers: { ...headers, 'content-type': type }, payload }, 'problem');
    }
    if (isCreate) {
      for (const [name, key] of [
        ['empty', ''],
        ['256 chars', 'k'.repeat(256)],
        ['control character', 'key\tone'],
      ] as const) {
        add(
          route,
          `Idempotency-Key ${name}`,
          { method, url, headers: { ...headers, 'idempotency-key': key }, payload: validBody },
          'problem',
        );
      }
    }
  }

  // 4. Credentials: every secured route refuses missing, malformed, foreign-scheme and near-miss keys.
  const badAuthorizations: Array<[string, string | undefined]> = [
    ['missing', undefined],
    ['scheme only', 'Bearer'],
    ['empty token', 'Bearer '],
    ['key without scheme', clientKeys.alice],
    ['Basic scheme', `Basic ${Buffer.from(`${clientKeys.alice}:`).toString('base64')}`],
    ['Token scheme', `Token ${clientKeys.alice}`],
    ['key plus a character', `Bearer ${clientKeys.alice}x`],
    ['key minus a character', `Bearer ${clientKeys.alice.slice(0, -1)}`],
    ['huge token', `Bearer ${'x'.repeat(5000)}`],
    ['null token', 'Bearer null'],
    ['two keys', `Bearer ${clientKeys.alice}, Bearer ${clientKeys.bob}`],
  ];
  for (const { method, template, route } of operations.filter((op) => isProtected(op.operation))) {
    const url = urlFor(template, completed.id);
    for (const [name, authorization] of badAuthorizations) {
      const headers: Record<string, string> = authorization === undefined ? {} : { authorization };
      const request: InjectOptions = method === 'POST' ? { method, url, headers, payload: validBody } : { method, url, headers };
      add(route, `auth: ${name}`, request, 'problem');
    }
  }

  // 5. Methods a route does not have.
  const documented = new Set(operations.map((op) => `${op.method} ${op.template}`));
  for (const template of new Set(operations.map((op) => op.template))) {
    const url = urlFor(template, completed.id);
    for (const method of ['PUT', 'PATCH', 'DELETE', 'POST', 'GET'] as const) {
      if (documented.has(`${method} ${template}`)) continue;
      const route = `${operations.find((op) => op.template === template)?.method ?? 'GET'} ${template.replace(/\{(\w+)\}/g, ':$1')}`;
      add(route, `method ${method}`, { method, url, headers: alice, payload: validBody }, 'problem');
    }
  }

  // 6. Odd headers on read routes (valid otherwise): harmless to ignore, never a 5xx.
  const oddHeaders: Array<[string, Record<string, string>]> = [
    ['hostile request id', { 'x-request-id': '../../etc/passwd\u00e9' }],
    ['huge request id', { 'x-request-id': 'r'.repeat(10_000) }],
    ['XML accepted only', { accept: 'application/xml' }],
    ['junk accept', { accept: ';;;q=abc, */*;q=2' }],
    ['junk If-None-Match', { 'if-none-match': `W/"${'"'.repeat(500)}` }],
    ['junk Range', { range: 'bytes=9-1,-,abc' }],
    ['junk content type on GET', { 'content-type': 'application/json; charset=ebcdic' }],
    ['gzip claimed', { 'accept-encoding': 'gzip;q=NaN, br;q=-1' }],
  ];
  for (const { method, template, route, operation } of operations.filter((op) => op.method === 'GET')) {
    const url = urlFor(template, completed.id);
    for (const [name, headers] of oddHeaders) {
      add(route, `headers: ${name}`, { method, url, headers: { ...(isProtected(operation) ? alice : {}), ...headers } }, 'not5xx');
    }
    add(
      route,
      'GET with a JSON body',
      { method, url, headers: { ...alice, 'content-type': 'application/json' }, payload: '{"prompt":1' },
      'not5xx',
    );
  }

  // 7. Paths: traversal out of the docs and sandbox asset directories, double slashes, case, encodings.
  const oddPaths: Array<[string, string]> = [
    ['GET /docs', '/docs'],
    ['GET /docs', '/docs/?url=https://evil.example/spec.json'],
    ['GET /docs/json', '/docs/json?x=%zz'],
    ['GET /docs/yaml', '/docs/yaml/..%2F..%2Fpackage.json'],
    ['GET /docs/static/index.html', '/docs/static/index.html?<script>'],
    ['GET /docs/static/swagger-initializer.js', '/docs/static/swagger-initializer.js%00.txt'],
    ['GET /docs/static/*', '/docs/static/..%2F..%2F..%2Fpackage.json'],
    ['GET /docs/static/*', '/docs/static/%2e%2e/%2e%2e/%2e%2e/package.json'],
    ['GET /docs/static/*', '/docs/static/../../../../../../etc/passwd'],
    ['GET /docs/static/*', '/docs/static/..%5C..%5C..%5Cpackage.json'],
    ['GET /docs/static/*', '/docs/static/%00'],
    ['GET /docs/static/*', '/docs/static/%E0%A4%A'],
    ['GET /docs/static/*', `/docs/${'a/'.repeat(2000)}`],
    // One route per committed file: anything else under the prefix must fall through to the 404 problem.
    ['GET /sandbox/assets/sample.mp4', '/sandbox/assets/..%2F..%2F..%2Fpackage.json'],
    ['GET /sandbox/assets/sample.mp4', '/sandbox/assets/%2e%2e%2fapp.ts'],
    ['GET /sandbox/assets/sample.mp4', '/sandbox/assets/sample.mp4%00.txt'],
    ['GET /sandbox/assets/sample.mp4', '/sandbox/assets/sample.mp4/..%2F..%2Fpackage.json'],
    ['GET /sandbox/assets/thumbnail.jpg', '/sandbox/assets/..%5Cgateway.db'],
    ['GET /sandbox/assets/thumbnail.jpg', `/sandbox/assets/${'s'.repeat(300)}`],
    ['GET /healthz', '//healthz'],
    ['GET /healthz', '/healthz/'],
    ['GET /healthz', '/HEALTHZ'],
    ['GET /healthz', '/%68ealthz'],
    ['GET /readyz', '/readyz/..%2Fmetrics'],
    ['GET /metrics', '/metrics/../docs'],
    ['GET /videos/:id', `/videos//${completed.id}`],
    ['GET /videos/:id', `/videos/${completed.id}/../${bobs.id}`],
  ];
  for (const [route, url] of oddPaths) add(route, `path ${url.slice(0, 60)}`, { method: 'GET', url, headers: alice }, 'not5xx');
  // 8. Odd range headers on the sample media.
  for (const file of Object.values(sampleClips).flatMap((clip) => [clip.video.file, clip.thumbnail.file])) {
    for (const headers of [
      { range: 'bytes=abc' },
      { range: 'bytes=-99999999999999999999' },
      { range: 'bytes=99999999999999999999-' },
      { range: `bytes=${'0-1,'.repeat(500)}0-1` },
      { range: 'bytes=0-1', 'if-range': 'W/"x", *' },
    ]) {
      add(
        `GET /sandbox/assets/${file}`,
        `${file} ${JSON.stringify(headers).slice(0, 60)}`,
        { method: 'GET', url: `/sandbox/assets/${file}`, headers },
        'not5xx',
      );
    }
  }

  // 9. Preflights (@fastify/cors' OPTIONS *) from origins no client lists, or malformed: a 404 problem, no CORS headers.
  for (const headers of [
    {},
    { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    { origin: 'null', 'access-control-request-method': 'GET' },
    { origin: 'https://evil.example', 'access-control-request-method': 'BREW', 'access-control-request-headers': 'x'.repeat(10_000) },
    { origin: `https://${'a'.repeat(5000)}.example` },
  ]) {
    add('OPTIONS *', `preflight ${JSON.stringify(headers).slice(0, 60)}`, { method: 'OPTIONS', url: '/videos', headers }, 'problem');
  }

  t.ok(cases.length >= 300, `${cases.length} generated cases`);

  // Every route the app serves is attacked by at least one case.
  const covered = new Set(cases.map((testCase) => testCase.route));
  t.ok(routes.length >= 15, `${routes.length} routes seen`);
  for (const route of routes) {
    t.ok(covered.has(route), `cases cover ${route}`);
  }

  for (const testCase of cases) {
    let timer: NodeJS.Timeout | undefined;
    const response = await Promise.race([
      gw.app.inject(testCase.request),
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within 5 s: ${testCase.name}`)), 5_000);
      }),
    ]).finally(() => clearTimeout(timer));
    const reachedUpstream = gw.sandbox.stats.creates !== upstreamCreatesBefore;
    const problems = [...problemsWith(response, testCase.expect), ...(reachedUpstream ? ['reached the upstream'] : [])];
    t.same(problems, [], `${testCase.name} → ${response.statusCode}`);
    if (reachedUpstream) break;
  }

  t.equal(snapshot(), before, 'the store is exactly as it was');
  t.equal(gw.sandbox.stats.creates, upstreamCreatesBefore, 'no malformed request reached the upstream');
});
