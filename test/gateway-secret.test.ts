import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import t from 'tap';

import { deriveKey, gatewaySecretProblem, loadGatewaySecret } from '../src/secrets/gateway-secret.js';

const configured = 'gs-test-0123456789abcdefghijklmnopqrstuvwxyz';

t.test('deriveKey: HKDF-SHA256 with info video-gateway/<purpose>, 32 bytes, one key per purpose', async (t) => {
  const secret = Buffer.from(configured);
  const key = deriveKey(secret, 'stream-tokens');
  t.equal(key.length, 32);
  t.same(key, deriveKey(Buffer.from(configured), 'stream-tokens'), 'deterministic: every replica derives the same key');
  t.not(key.toString('hex'), deriveKey(secret, 'upstream-callbacks').toString('hex'), 'another purpose, another key');
  t.not(key.toString('hex'), deriveKey(Buffer.from(`${configured}x`), 'stream-tokens').toString('hex'), 'another secret, another key');
  // RFC 5869 test case 3 (empty salt and info) pins the construction: HKDF-SHA256, not a plain HMAC or hash.
  const { hkdfSync } = await import('node:crypto');
  const ikm = Buffer.alloc(22, 0x0b);
  t.equal(
    Buffer.from(hkdfSync('sha256', ikm, Buffer.alloc(0), '', 42)).toString('hex'),
    '8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8',
  );
  t.equal(
    deriveKey(ikm, 'x').toString('hex'),
    Buffer.from(hkdfSync('sha256', ikm, Buffer.alloc(0), 'video-gateway/x', 32)).toString('hex'),
  );
});

t.test('gatewaySecretProblem: length, whitespace, too few distinct characters; never quotes the text', async (t) => {
  t.equal(gatewaySecretProblem(configured), undefined);
  t.match(gatewaySecretProblem(configured.slice(0, 31)), /^is too short \(31 characters/);
  t.match(gatewaySecretProblem('abc'), /^is too short \(3 characters; expected at least 32/);
  t.match(gatewaySecretProblem(`${configured} more`), /^contains whitespace/);
  t.match(gatewaySecretProblem('a'.repeat(64)), /^is not random/);
  for (const bad of ['abc', 'a'.repeat(64)]) t.notMatch(gatewaySecretProblem(bad) ?? '', bad.slice(0, 3));
});

t.test('GATEWAY_SECRET when set: used as is, nothing written, nothing logged', async (t) => {
  const dir = t.testdir();
  const lines: string[] = [];
  const secret = await loadGatewaySecret({ configured, dataDir: dir, log: (line) => lines.push(line) });
  t.equal(secret.toString('utf8'), configured);
  t.same(lines, []);
  await t.rejects(stat(join(dir, 'gateway-secret')), { code: 'ENOENT' });
});

t.test('a weak GATEWAY_SECRET is one clear line that does not quote it', async (t) => {
  const error = await loadGatewaySecret({ configured: 'too-short', dataDir: t.testdir(), log: () => {} }).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  t.type(error, Error);
  t.match((error as Error).message, /^GATEWAY_SECRET is too short \(9 characters; expected at least 32/);
  t.notMatch((error as Error).message, 'too-short');
});

t.test('unset: generated once into <dataDir>/gateway-secret with mode 0600, then reused; the secret is never logged', async (t) => {
  const dir = join(t.testdir(), 'data');
  const lines: string[] = [];
  const first = await loadGatewaySecret({ dataDir: dir, log: (line) => lines.push(line) });
  const file = join(dir, 'gateway-secret');
  t.equal((await stat(file)).mode & 0o777, 0o600);
  t.match((await readFile(file, 'utf8')).trim(), /^[0-9a-f]{64}$/, '32 random bytes, hex');
  t.equal(first.toString('utf8'), (await readFile(file, 'utf8')).trim());
  t.equal(lines.length, 1);
  t.match(lines[0], /Generated a gateway secret into .*gateway-secret/);
  t.notMatch(lines.join('\n'), first.toString('utf8'), 'the secret is not in the line');

  const again = await loadGatewaySecret({ dataDir: dir, log: (line) => lines.push(line) });
  t.same(again, first, 'reused on the next start');
  t.equal(lines.length, 1, 'nothing logged when reused');
  t.same(
    await loadGatewaySecret({ configured: again.toString('utf8'), dataDir: t.testdir(), log: () => {} }),
    first,
    'the file content as GATEWAY_SECRET gives the same secret (other replicas)',
  );
});

t.test('two processes starting at once agree on one secret', async (t) => {
  const dir = t.testdir();
  const secrets = await Promise.all(Array.from({ length: 6 }, () => loadGatewaySecret({ dataDir: dir, log: () => {} })));
  for (const secret of secrets) t.same(secret, secrets[0]);
});

t.test('a stored secret readable by group or others is refused with one line', async (t) => {
  const dir = t.testdir();
  await loadGatewaySecret({ dataDir: dir, log: () => {} });
  const file = join(dir, 'gateway-secret');
  await chmod(file, 0o644);
  await t.rejects(loadGatewaySecret({ dataDir: dir, log: () => {} }), {
    message: `Gateway secret ${file} is readable by group or others (mode 644): run chmod 600 ${file}`,
  });
});

t.test('a corrupt stored secret is refused, not silently replaced', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'gateway-secret');
  await writeFile(file, 'short\n', { mode: 0o600 });
  await t.rejects(loadGatewaySecret({ dataDir: dir, log: () => {} }), /gateway-secret is too short .*delete it to generate a new one/);
  t.equal(await readFile(file, 'utf8'), 'short\n');
});
