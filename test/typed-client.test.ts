// The typed client a partner would generate (openapi-typescript + openapi-fetch) against a real listening gateway:
// the program in examples/typed-client compiles with `npm run typecheck`; here it runs, and the committed types
// must be what the committed spec generates.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import t from 'tap';

import { createGatewayClient, createVideo, readVideoIfChanged } from '../examples/typed-client/client.js';
import { advanceAndPoll, clientKeys, startTestGateway } from './helpers/gateway.js';

const root = fileURLToPath(new URL('..', import.meta.url));

t.test('examples/typed-client/api.d.ts is what openapi-typescript makes of openapi.yaml (`npm run client:types`)', async (t) => {
  const cli = fileURLToPath(new URL('../node_modules/openapi-typescript/bin/cli.js', import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, [cli, 'openapi.yaml'], { cwd: root, maxBuffer: 16 * 1024 * 1024 });
  t.equal(stdout, await readFile(new URL('../examples/typed-client/api.d.ts', import.meta.url), 'utf8'));
});

t.test('the typed client creates, reads with ETag, and gets 304 for If-None-Match', async (t) => {
  const gw = await startTestGateway(t);
  await gw.app.listen({ host: '127.0.0.1', port: 0 });
  const client = createGatewayClient(`http://127.0.0.1:${(gw.app.server.address() as AddressInfo).port}`, clientKeys.alice);

  const created = await createVideo(client, 'A tiger walking in snow');
  t.match(created, { status: 'queued', aspectRatio: '9:16' });
  await advanceAndPoll(gw, 11_000);

  const first = await readVideoIfChanged(client, created.id);
  t.ok(first.changed);
  if (!first.changed) return;
  t.equal(first.video.status, 'completed');
  t.match(first.etag, /^"/);
  const again = await readVideoIfChanged(client, created.id, first.etag ?? undefined);
  t.same(again, { changed: false }, 'If-None-Match with the current ETag: 304');
  const stale = await readVideoIfChanged(client, created.id, '"stale"');
  t.ok(stale.changed, 'a stale ETag gets the video');
});
