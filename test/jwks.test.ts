import { createServer, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';

import t, { type Test } from 'tap';

import { fetchJwks } from '../src/auth/jwks.js';

/** A real HTTP server on 127.0.0.1:0 answering with `handler`. */
async function serve(t: Test, handler: RequestListener): Promise<string> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
}

const limits = { timeoutMs: 2_000, maxBytes: 4 * 1024 };

t.test('a JWKS is fetched with a size cap, no redirects and a deadline', async (t) => {
  const good = await serve(t, (_request, response) => response.end(JSON.stringify({ keys: [] })));
  t.same(await fetchJwks(good, limits), { keys: [] });

  const declaredHuge = await serve(t, (_request, response) => response.end(JSON.stringify({ keys: [], pad: 'x'.repeat(10_000) })));
  await t.rejects(fetchJwks(declaredHuge, limits), /larger than 4096 bytes/, 'content-length over the cap');

  const streamedHuge = await serve(t, (_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' }); // chunked: no content-length
    for (let i = 0; i < 20; i++) response.write('x'.repeat(1024));
    response.end();
  });
  await t.rejects(fetchJwks(streamedHuge, limits), /larger than 4096 bytes/, 'a chunked body is cut at the cap');

  const redirect = await serve(t, (_request, response) =>
    response.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data' }).end(),
  );
  await t.rejects(fetchJwks(redirect, limits), /answered HTTP 302/, 'a redirect is not followed');

  const notJson = await serve(t, (_request, response) => response.end('<html>'));
  await t.rejects(fetchJwks(notJson, limits), /not JSON/);
  const noKeys = await serve(t, (_request, response) => response.end('{"keys":"nope"}'));
  await t.rejects(fetchJwks(noKeys, limits), /no "keys" array/);

  // Headers sent, then the body never ends: the deadline applies to the whole fetch, not only to the headers.
  const hung = await serve(t, (_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.write('{"keys":[');
  });
  await t.rejects(fetchJwks(hung, { ...limits, timeoutMs: 100 }), 'a stalled body hits the deadline');
});
