import { execFile } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { Webhook } from 'standardwebhooks';
import t, { type Test } from 'tap';

import { validateClientsFile } from '../schemas/clients.js';
import {
  type ClientsFile,
  createClientRegistry,
  generateApiKey,
  generateWebhookSecret,
  hashApiKey,
  loadClientRegistry,
  newClientEntry,
} from '../src/auth/clients.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));

const keyA = 'vgk_test-key-a';
const keyB = 'vgk_test-key-b';
const secretA = `whsec_${Buffer.alloc(24, 1).toString('base64')}`;
const secretB = `whsec_${Buffer.alloc(32, 2).toString('base64')}`;

const sampleFile = (): ClientsFile => ({
  clients: [
    { id: 'app', apiKeySha256: hashApiKey(keyA), webhookSecret: secretA },
    {
      id: 'partner-b',
      name: 'Partner B',
      apiKeySha256: hashApiKey(keyB),
      webhookSecret: secretB,
      rateLimitPerMinute: 1200,
      createLimitPerMinute: 5,
      allowedCallbackHosts: ['Hooks.Partner-B.example', 'hooks.partner-b.example', 'backup.example.org'],
    },
  ],
});

/** Problem lines of an invalid clients value, failing the test when it is valid. */
function problemsOf(t: Test, value: unknown): string[] {
  const result = validateClientsFile(value);
  if (result.ok) {
    t.fail('expected the clients file to be invalid');
    return [];
  }
  return result.problems.map((problem) => `${problem.path}: ${problem.message}`);
}

t.test('key, hash and secret helpers', async (t) => {
  t.equal(hashApiKey('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', 'SHA-256 hex');
  const key = generateApiKey();
  t.match(key, /^vgk_[A-Za-z0-9_-]{43}$/);
  t.not(generateApiKey(), key, 'random');
  const secret = generateWebhookSecret();
  t.match(secret, /^whsec_[A-Za-z0-9+/]{32}$/);
  t.equal(Buffer.from(secret.slice(6), 'base64').length, 24);

  const { apiKey, entry } = newClientEntry({ id: 'partner-a', name: 'Partner A' });
  t.equal(entry.apiKeySha256, hashApiKey(apiKey));
  t.same(Object.keys(entry), ['id', 'name', 'apiKeySha256', 'webhookSecret']);
  t.notMatch(JSON.stringify(entry), apiKey, 'the entry never holds the key');
  t.ok(validateClientsFile({ clients: [entry] }).ok, 'the entry is a valid clients file entry');
  t.same(Object.keys(newClientEntry({ id: 'x' }).entry), ['id', 'apiKeySha256', 'webhookSecret'], 'name optional');
  t.throws(() => newClientEntry({ id: 'bad id' }), /invalid client id "bad id"/);
  t.throws(() => newClientEntry({ id: '' }), /invalid client id/);
  t.throws(() => newClientEntry({ id: 'a'.repeat(65) }), /invalid client id/);
  t.throws(() => newClientEntry({ id: 'ok', name: 'n'.repeat(201) }), /invalid client name/);
});

t.test('a generated secret signs and verifies with standardwebhooks', async (t) => {
  const secret = generateWebhookSecret();
  const webhook = new Webhook(secret);
  const body = JSON.stringify({ type: 'video.completed', timestamp: new Date().toISOString(), data: { id: 'vid_1' } });
  const now = new Date();
  const signature = webhook.sign('msg_1', now, body);
  t.match(signature, /^v1,[A-Za-z0-9+/]+=*$/);
  const headers = {
    'webhook-id': 'msg_1',
    'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
    'webhook-signature': signature,
  };
  t.same(webhook.verify(body, headers), JSON.parse(body));
  t.throws(() => new Webhook(generateWebhookSecret()).verify(body, headers), 'another secret does not verify');
  t.throws(() => webhook.verify(`${body} `, headers), 'a changed body does not verify');
  // Secrets accepted by the file schema are accepted by the library, whatever their length.
  t.doesNotThrow(() => new Webhook(secretB));
});

t.test('authenticate', async (t) => {
  const registry = createClientRegistry(sampleFile());
  const valid = [`Bearer ${keyA}`, `bearer ${keyA}`, `BEARER ${keyA}`, `Bearer   ${keyA}`, `  Bearer ${keyA}  `];
  for (const header of valid) t.equal(registry.authenticate(header)?.id, 'app', JSON.stringify(header));
  t.equal(registry.authenticate(`Bearer ${keyB}`)?.id, 'partner-b');

  const invalid = [
    undefined,
    '',
    'Bearer',
    'Bearer ',
    `Basic ${Buffer.from(`app:${keyA}`).toString('base64')}`,
    `Basic ${keyA}`,
    keyA,
    `Bearer${keyA}`,
    `Bearer ${keyA} extra`,
    `Bearer ${keyA}x`,
    `Bearer\t${keyA}`,
    `Token ${keyA}`,
    `Bearer ${keyA.toUpperCase()}`,
    `Bearer ${'x'.repeat(5000)}`,
  ];
  for (const header of invalid) t.equal(registry.authenticate(header), undefined, JSON.stringify(header)?.slice(0, 40) ?? 'undefined');
});

t.test('registry contents', async (t) => {
  const registry = createClientRegistry(sampleFile());
  t.same(
    registry.get('app'),
    {
      id: 'app',
      name: 'app',
      webhookSecret: secretA,
      rateLimitPerMinute: 600,
      createLimitPerMinute: 30,
      allowedCallbackHosts: null,
      allowedOrigins: [],
    },
    'defaults: name = id, 600/min, 30 creates/min, any host',
  );
  t.same(
    registry.get('partner-b'),
    {
      id: 'partner-b',
      name: 'Partner B',
      webhookSecret: secretB,
      rateLimitPerMinute: 1200,
      createLimitPerMinute: 5,
      allowedCallbackHosts: ['hooks.partner-b.example', 'backup.example.org'],
      allowedOrigins: [],
    },
    'hosts lower-cased and de-duplicated',
  );
  t.equal(registry.get('nobody'), undefined);
  t.same(
    registry.all().map((client) => client.id),
    ['app', 'partner-b'],
  );
  for (const client of registry.all()) {
    t.notMatch(JSON.stringify(client), hashApiKey(keyA), 'no key hash on a client');
    t.notMatch(JSON.stringify(client), keyA);
  }
  t.same(createClientRegistry({ clients: [] }).all(), [], 'an empty registry is allowed (nobody gets in)');
  t.throws(
    () => createClientRegistry({ clients: [sampleFile().clients[0]!, sampleFile().clients[0]!] }),
    /\/clients\/1\/id: duplicate id "app"/,
  );
});

t.test('clients file validation', async (t) => {
  t.ok(validateClientsFile(sampleFile()).ok);

  const [app, partner] = sampleFile().clients;
  if (app === undefined || partner === undefined) throw new Error('fixture');

  t.same(problemsOf(t, { clients: [app, { ...partner, id: 'app' }] }), ['/clients/1/id: duplicate id "app" (also at /clients/0/id)']);
  t.same(problemsOf(t, { clients: [app, { ...partner, apiKeySha256: app.apiKeySha256 }] }), [
    '/clients/1/apiKeySha256: same API key as /clients/0 (every client needs its own key)',
  ]);

  const badHashes = [app.apiKeySha256.toUpperCase(), app.apiKeySha256.slice(1), keyA, ''];
  for (const apiKeySha256 of badHashes) {
    t.same(
      problemsOf(t, { clients: [{ ...app, apiKeySha256 }] }),
      ['/clients/0/apiKeySha256: expected the SHA-256 of the API key as 64 lowercase hex characters (npm run client:new prints one)'],
      `hash ${JSON.stringify(apiKeySha256.slice(0, 10))}`,
    );
  }

  const badSecrets = [
    secretA.slice('whsec_'.length), // no prefix
    `whsec_${Buffer.alloc(24, 1).toString('base64url')}_-`, // base64url alphabet
    `whsec_${Buffer.alloc(24, 1).toString('base64')}=`, // broken padding
    `whsec_${Buffer.alloc(24, 1).toString('base64')} `,
  ];
  for (const webhookSecret of badSecrets) {
    const problems = problemsOf(t, { clients: [{ ...app, webhookSecret }] });
    t.same(problems, ['/clients/0/webhookSecret: expected "whsec_" then base64 of 24 to 64 random bytes (npm run client:new prints one)']);
    t.notMatch(problems.join('\n'), webhookSecret.trim(), 'the secret is not echoed');
  }
  t.same(problemsOf(t, { clients: [{ ...app, webhookSecret: 'whsec_' }] }), [
    '/clients/0/webhookSecret: decodes to 0 bytes (expected 24 to 64; npm run client:new prints one)',
  ]);
  t.same(problemsOf(t, { clients: [{ ...app, webhookSecret: `whsec_${Buffer.alloc(16).toString('base64')}` }] }), [
    '/clients/0/webhookSecret: decodes to 16 bytes (expected 24 to 64; npm run client:new prints one)',
  ]);
  t.same(problemsOf(t, { clients: [{ ...app, webhookSecret: `whsec_${Buffer.alloc(65).toString('base64')}` }] }), [
    '/clients/0/webhookSecret: decodes to 65 bytes (expected 24 to 64; npm run client:new prints one)',
  ]);
  t.ok(validateClientsFile({ clients: [{ ...app, webhookSecret: `whsec_${Buffer.alloc(64).toString('base64')}` }] }).ok, '64 bytes ok');

  t.same(problemsOf(t, { clients: [{ ...app, id: 'has space' }] }), ['/clients/0/id: expected 1 to 64 letters, digits, "_" or "-"']);
  t.same(problemsOf(t, { clients: [{ id: 'x', apiKeySha256: app.apiKeySha256 }] }), [
    '/clients/0/webhookSecret: is missing (expected "whsec_" then base64 of 24 to 64 random bytes (npm run client:new prints one))',
  ]);
  t.same(problemsOf(t, { clients: [{ ...app, rateLimit: 5 }] }), [
    '/clients/0/rateLimit: is not a known field (known fields: id, name, apiKeySha256, webhookSecret, rateLimitPerMinute, createLimitPerMinute, allowedCallbackHosts, allowedOrigins)',
  ]);
  t.same(problemsOf(t, { clients: [{ ...app, rateLimitPerMinute: 0, createLimitPerMinute: 1.5 }] }), [
    '/clients/0/rateLimitPerMinute: expected an integer of at least 1',
    '/clients/0/createLimitPerMinute: expected an integer of at least 1',
  ]);
  t.same(
    problemsOf(t, {
      clients: [
        {
          ...app,
          allowedCallbackHosts: [
            'https://hooks.example.com',
            'hooks.example.com:0',
            '*.',
            'a.*.example.com',
            'h.example.com/x',
            'h.example.com:70000',
          ],
        },
      ],
    }),
    [0, 1, 2, 3, 4, 5].map(
      (index) =>
        `/clients/0/allowedCallbackHosts/${index}: expected a host such as hooks.example.com, *.example.com or hooks.example.com:8443 (no scheme or path)`,
    ),
  );
  // The documented forms are accepted: a wildcard, host:port, an IP literal, IPv6 in brackets.
  const accepted = validateClientsFile({
    clients: [
      {
        ...app,
        allowedCallbackHosts: ['*.example.com', 'hooks.example.com:8443', '*.eu.example.com:443', '8.8.8.8', '[2606:4700::1111]:443'],
      },
    ],
  });
  t.equal(accepted.ok, true, 'wildcards and ports are valid entries');
  t.same(problemsOf(t, []), [': expected an object { "clients": [ … ] }']);
  t.same(problemsOf(t, {}), ['/clients: is missing (expected an array of clients)']);
  t.same(problemsOf(t, { clients: {} }), ['/clients: expected an array of clients']);
});

t.test('loading a given clients file', async (t) => {
  const dir = t.testdir({
    'good.json': JSON.stringify(sampleFile()),
    'broken.json': `{ "clients": [ { "id": "x", "webhookSecret": "${secretA}" ,, } ] }`,
    'invalid.json': JSON.stringify({
      clients: [
        { id: 'a', apiKeySha256: 'NOPE', webhookSecret: secretA },
        { id: 'a', apiKeySha256: hashApiKey(keyB), webhookSecret: 'whsec_short' },
      ],
    }),
  });
  const log: string[] = [];
  const options = (file: string) => ({ clientsFile: path.join(dir, file), dataDir: dir, log: (line: string) => log.push(line) });

  const registry = await loadClientRegistry(options('good.json'));
  t.equal(registry.authenticate(`Bearer ${keyB}`)?.id, 'partner-b');

  await t.rejects(loadClientRegistry(options('missing.json')), {
    message: `Clients file ${path.join(dir, 'missing.json')}: cannot read it (no such file)`,
    cause: { code: 'ENOENT' },
  });

  const broken = await loadClientRegistry(options('broken.json')).then(
    () => '',
    (error: Error) => error.message,
  );
  t.match(broken, new RegExp(`^Clients file ${path.join(dir, 'broken.json')}: not valid JSON( \\(at line 1, column \\d+\\))?$`));
  t.notMatch(broken, secretA.slice(6), 'the JSON error does not quote the file');

  const invalid = await loadClientRegistry(options('invalid.json')).then(
    () => '',
    (error: Error) => error.message,
  );
  const file = path.join(dir, 'invalid.json');
  // The schema reports every field; uniqueness is checked once the shapes are right.
  t.same(invalid.split('\n'), [
    `Clients file ${file}: /clients/0/apiKeySha256: expected the SHA-256 of the API key as 64 lowercase hex characters (npm run client:new prints one)`,
    `Clients file ${file}: /clients/1/webhookSecret: expected "whsec_" then base64 of 24 to 64 random bytes (npm run client:new prints one)`,
  ]);
  t.notMatch(invalid, 'whsec_short');
  t.same(log, [], 'nothing logged for a given file');
});

t.test('first start creates data/clients.json once, mode 0600, and prints the key once', async (t) => {
  const dataDir = path.join(t.testdir(), 'nested', 'data');
  const log: string[] = [];
  const first = await loadClientRegistry({ clientsFile: null, dataDir, log: (line) => log.push(line) });

  const file = path.join(dataDir, 'clients.json');
  t.equal((await stat(file)).mode & 0o777, 0o600, 'readable by the owner only');
  t.equal(log.length, 1, 'one banner');
  const banner = log[0] ?? '';
  const apiKey = /vgk_[A-Za-z0-9_-]{43}/.exec(banner)?.[0] ?? '';
  const secret = /whsec_[A-Za-z0-9+/=]+/.exec(banner)?.[0] ?? '';
  t.equal(banner.split(apiKey).length - 1, 1, 'the key appears once in the banner');
  t.match(banner, file);
  t.match(banner, 'not shown again');

  const stored = JSON.parse(await readFile(file, 'utf8')) as ClientsFile;
  t.equal(stored.clients.length, 1);
  t.equal(stored.clients[0]?.id, 'default');
  t.equal(stored.clients[0]?.apiKeySha256, hashApiKey(apiKey), 'the file holds the hash');
  t.equal(stored.clients[0]?.webhookSecret, secret);
  t.notMatch(await readFile(file, 'utf8'), apiKey, 'the file never holds the key');
  t.equal(first.authenticate(`Bearer ${apiKey}`)?.id, 'default');
  t.equal(first.get('default')?.webhookSecret, secret);

  const later: string[] = [];
  const second = await loadClientRegistry({ clientsFile: null, dataDir, log: (line) => later.push(line) });
  t.same(later, [], 'a later start prints nothing');
  t.equal(second.authenticate(`Bearer ${apiKey}`)?.id, 'default', 'the same key still works');
  t.same(
    second.all().map((client) => client.id),
    ['default'],
  );
});

t.test('concurrent first starts create one registry, print one banner', async (t) => {
  const dataDir = t.testdir();
  const log: string[] = [];
  const registries = await Promise.all(
    Array.from({ length: 5 }, () => loadClientRegistry({ clientsFile: null, dataDir, log: (line) => log.push(line) })),
  );
  t.equal(log.length, 1);
  const apiKey = /vgk_[A-Za-z0-9_-]{43}/.exec(log[0] ?? '')?.[0] ?? '';
  for (const registry of registries) t.equal(registry.authenticate(`Bearer ${apiKey}`)?.id, 'default');
});

t.test('an edited default file is validated like any other', async (t) => {
  const dataDir = t.testdir();
  await writeFile(path.join(dataDir, 'clients.json'), '{"clients": [{"id": "x"}]}');
  const log: string[] = [];
  await t.rejects(
    loadClientRegistry({ clientsFile: null, dataDir, log: (line) => log.push(line) }),
    /clients\.json: \/clients\/0\/apiKeySha256: is missing/,
  );
  t.same(log, []);
});

t.test('npm run client:new', async (t) => {
  const script = path.join(root, 'scripts', 'client-new.ts');
  const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', script, '--id', 'partner-a', '--name', 'Partner A'], {
    cwd: root,
  });
  t.equal(stderr, '');
  const apiKey = /vgk_[A-Za-z0-9_-]{43}/.exec(stdout)?.[0];
  t.ok(apiKey, 'prints a key');
  t.equal(stdout.split(apiKey ?? '-').length - 1, 1, 'the key is printed once');
  const entry: unknown = JSON.parse(stdout.slice(stdout.indexOf('{'), stdout.lastIndexOf('}') + 1));
  t.match(entry, { id: 'partner-a', name: 'Partner A', apiKeySha256: hashApiKey(apiKey ?? '') });
  const validation = validateClientsFile({ clients: [entry] });
  t.ok(validation.ok, 'a ready-to-paste entry');
  if (validation.ok) {
    const registry = createClientRegistry(validation.file);
    t.equal(registry.authenticate(`Bearer ${apiKey}`)?.id, 'partner-a', 'the printed key authenticates against the entry');
    t.doesNotThrow(() => new Webhook(validation.file.clients[0]?.webhookSecret ?? ''));
  }
});

t.test('npm run client:new without a valid --id: usage on stderr, exit 2', async (t) => {
  const script = path.join(root, 'scripts', 'client-new.ts');
  const cases = [[], ['--id'], ['--id', 'no spaces please'], ['--id', 'x', '--unknown']];
  // In parallel: each run pays tsx's start-up.
  const failures = await Promise.all(
    cases.map((args) =>
      run(process.execPath, ['--import', 'tsx', script, ...args], { cwd: root }).then(
        () => ({ code: 0, stderr: '', stdout: '' }),
        (error: { code: number; stderr: string; stdout: string }) => error,
      ),
    ),
  );
  failures.forEach((failure, index) => {
    t.equal(failure.code, 2, `exit 2 for ${JSON.stringify(cases[index])}`);
    t.match(failure.stderr, /Usage: npm run client:new -- --id ID \[--name NAME\]/);
    t.equal(failure.stdout, '', 'nothing on stdout');
  });
});
