import type dns from 'node:dns';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

import t from 'tap';
import { request } from 'undici';

import { type CallbackUrlPolicy, checkCallbackUrl, isHostAllowed } from '../src/webhooks/callback-url.js';
import {
  createGuardedAgent,
  FORBIDDEN_ADDRESS_ERROR_CODE,
  guardedLookup,
  isForbiddenAddress,
  isForbiddenAddressError,
  parseIpLiteralHost,
} from '../src/webhooks/ssrf.js';

// ---------------------------------------------------------------------------------------------------------------
// isForbiddenAddress
// ---------------------------------------------------------------------------------------------------------------

const FORBIDDEN_ADDRESSES = [
  // IPv4
  '0.0.0.0',
  '0.1.2.3',
  '10.0.0.5',
  '10.255.255.255',
  '100.64.0.1',
  '100.127.255.254',
  '127.0.0.1',
  '127.8.9.10',
  '169.254.169.254',
  '172.16.0.1',
  '172.31.255.255',
  '192.0.0.8',
  '192.0.2.1',
  '192.88.99.1',
  '192.168.1.1',
  '198.18.0.1',
  '198.19.255.255',
  '198.51.100.7',
  '203.0.113.9',
  '224.0.0.1',
  '239.255.255.250',
  '240.0.0.1',
  '255.255.255.255',
  // IPv6 special ranges
  '::',
  '::1',
  'fc00::1',
  'fd12:3456:789a::1',
  'fe80::1',
  'febf::1',
  'fec0::1',
  'ff02::1',
  'ff05::1:3',
  '100::1',
  '2001:db8::1',
  '2001::1',
  '2001:0:4136:e378:8000:63bf:3fff:fdd2' /* Teredo */,
  '2001:2::1',
  '3fff::1',
  '5f00::1',
  '4000::1' /* outside 2000::/3: unallocated */,
  // IPv4-mapped (both spellings), IPv4-compatible, IPv4-translated
  '::ffff:127.0.0.1',
  '::ffff:7f00:1',
  '::ffff:10.0.0.1',
  '::ffff:169.254.169.254',
  '::ffff:0.0.0.0',
  '::127.0.0.1',
  '::7f00:1',
  '::8.8.8.8' /* deprecated form: refused whatever it embeds */,
  '::ffff:0:7f00:1',
  // NAT64 and 6to4 embedding forbidden IPv4; local-use NAT64 prefix
  '64:ff9b::7f00:1',
  '64:ff9b::10.0.0.1',
  '64:ff9b::a9fe:a9fe',
  '64:ff9b:1::808:808',
  '2002:7f00:1::1',
  '2002:a00:1::',
  '2002:c0a8:101::1',
  // zone ids, brackets, non-canonical IPv4 spellings
  'fe80::1%eth0',
  '[::1]',
  '[::ffff:127.0.0.1]',
  '2130706433',
  '0x7f000001',
  '0177.0.0.1',
  '127.1',
  '0x7f.1',
  // not an address at all: fail closed
  'localhost',
  'example.com',
  '',
  '999.1.1.1',
  'not an ip',
];

const PUBLIC_ADDRESSES = [
  '8.8.8.8',
  '1.1.1.1',
  '93.184.216.34',
  '100.63.255.255',
  '100.128.0.0',
  '172.15.255.255',
  '172.32.0.0',
  '192.0.1.1',
  '192.169.0.1',
  '198.17.255.255',
  '198.20.0.0',
  '223.255.255.255',
  '169.253.255.255',
  '2606:4700:4700::1111',
  '2001:4860:4860::8888',
  '2a00:1450:4001:80b::200e',
  '2620:fe::fe',
  '::ffff:8.8.8.8',
  '::ffff:808:808',
  '64:ff9b::808:808',
  '64:ff9b::1.1.1.1',
  '2002:808:808::1',
  '[2606:4700:4700::1111]',
];

t.test('isForbiddenAddress refuses everything that is not plainly public unicast', async (t) => {
  for (const address of FORBIDDEN_ADDRESSES) t.equal(isForbiddenAddress(address), true, `forbidden: ${address}`);
  for (const address of PUBLIC_ADDRESSES) t.equal(isForbiddenAddress(address), false, `public: ${address}`);
});

// ---------------------------------------------------------------------------------------------------------------
// parseIpLiteralHost
// ---------------------------------------------------------------------------------------------------------------

t.test('WHATWG URL normalises every IPv4 spelling to a dotted quad (the premise of the request-time check)', async (t) => {
  for (const spelling of ['2130706433', '0177.0.0.1', '0x7f000001', '0x7f.1', '127.1', '0x7F.0.0.1', '127.0.0.1.', '%31%32%37.0.0.1']) {
    t.equal(new URL(`https://${spelling}/`).hostname, '127.0.0.1', spelling);
  }
  t.equal(new URL('https://[::ffff:127.0.0.1]/').hostname, '[::ffff:7f00:1]');
  t.throws(() => new URL('https://[fe80::1%25eth0]/'), 'zone ids are not valid in URL hosts');
});

t.test('parseIpLiteralHost recognises IP literals in any spelling and returns null for DNS names', async (t) => {
  const cases: Array<[string, string | null]> = [
    ['127.0.0.1', '127.0.0.1'],
    ['2130706433', '127.0.0.1'],
    ['0177.0.0.1', '127.0.0.1'],
    ['0x7f000001', '127.0.0.1'],
    ['0x7f.1', '127.0.0.1'],
    ['127.1', '127.0.0.1'],
    ['127.0.0.1.', '127.0.0.1'],
    ['8.8.8.8', '8.8.8.8'],
    ['::1', '::1'],
    ['[::1]', '::1'],
    ['[0:0:0:0:0:0:0:1]', '::1'],
    ['[::ffff:127.0.0.1]', '::ffff:7f00:1'],
    ['::ffff:7f00:1', '::ffff:7f00:1'],
    ['[2606:4700:4700:0:0:0:0:1111]', '2606:4700:4700::1111'],
    ['fe80::1%eth0', 'fe80::1%eth0'],
    ['[fe80::1%25eth0]', 'fe80::1%eth0'],
    ['example.com', null],
    ['localhost', null],
    ['xn--nxasmq6b.com', null],
    ['1.2.3.4.example', null],
    ['[example.com]', null],
    ['::8.8.8.8', '::808:808'], // IPv4-compatible, not IPv4-mapped (RFC 4291)
    ['::ffff:0177.0.0.1', null], // no octal inside IPv6
    ['fe80::1%eth0/../x', null],
    ['deadbeef.cafe', null],
    ['evil.com@127.0.0.1', null],
    ['0x', '0.0.0.0'],
    ['4294967295', '255.255.255.255'],
    ['4294967296', null],
    ['', null],
  ];
  for (const [input, expected] of cases) t.equal(parseIpLiteralHost(input), expected, JSON.stringify(input));
});

// ---------------------------------------------------------------------------------------------------------------
// checkCallbackUrl
// ---------------------------------------------------------------------------------------------------------------

const STRICT: CallbackUrlPolicy = { allowHttp: false, allowPrivateNetworks: false, allowedHosts: null };
const RELAXED: CallbackUrlPolicy = { allowHttp: true, allowPrivateNetworks: true, allowedHosts: null };

t.test('checkCallbackUrl accepts public https URLs, any port, and keeps the fragment', async (t) => {
  for (const input of [
    'https://hooks.example.com/video',
    'https://hooks.example.com:8443/video?token=abc',
    'https://HOOKS.Example.com./video',
    'https://8.8.8.8/hook',
    'https://[2606:4700:4700::1111]/hook',
    'https://[::ffff:8.8.8.8]/hook',
    'https://xn--bcher-kva.example/hook',
    'https://bücher.example/hook',
    'https://hooks.example.com/video#section',
  ]) {
    const result = checkCallbackUrl(input, STRICT);
    t.equal(result.ok, true, input);
  }
  const result = checkCallbackUrl('https://HOOKS.Example.COM:8443/a#frag', STRICT);
  t.ok(result.ok);
  if (result.ok) {
    t.equal(result.url.hostname, 'hooks.example.com');
    t.equal(result.url.port, '8443');
    t.equal(result.url.hash, '#frag');
  }
});

t.test('checkCallbackUrl refuses with a short reason naming the problem', async (t) => {
  const PRIVATE = 'points to a private or reserved address';
  const LOCAL_NAME = 'points to a local or internal host name';
  const cases: Array<[string, string]> = [
    ['/relative/path', 'must be an absolute URL'],
    ['hooks.example.com/video', 'must be an absolute URL'],
    ['not a url', 'must be an absolute URL'],
    ['', 'must be an absolute URL'],
    ['http://hooks.example.com/video', 'must use https'],
    ['ftp://hooks.example.com/video', 'must use https'],
    ['javascript:alert(1)', 'must use https'],
    ['file:///etc/passwd', 'must use https'],
    ['https://user:secret@hooks.example.com/', 'must not contain credentials'],
    ['https://user@hooks.example.com/', 'must not contain credentials'],
    ['https://:secret@hooks.example.com/', 'must not contain credentials'],
    [`https://hooks.example.com/${'a'.repeat(2048)}`, 'must be at most 2048 characters'],
    // IP literals in every spelling
    ['https://127.0.0.1/', PRIVATE],
    ['https://2130706433/', PRIVATE],
    ['https://0177.0.0.1/', PRIVATE],
    ['https://0x7f000001/', PRIVATE],
    ['https://0x7f.1/', PRIVATE],
    ['https://127.1/', PRIVATE],
    ['https://127.0.0.1.:8443/', PRIVATE],
    ['https://%31%32%37.0.0.1/', PRIVATE],
    ['https://0/', PRIVATE],
    ['https://10.0.0.5/', PRIVATE],
    ['https://169.254.169.254/latest/meta-data/', PRIVATE],
    ['https://100.64.1.1/', PRIVATE],
    ['https://192.168.0.1:8080/', PRIVATE],
    ['https://[::1]/', PRIVATE],
    ['https://[::]/', PRIVATE],
    ['https://[::ffff:127.0.0.1]/', PRIVATE],
    ['https://[::ffff:7f00:1]/', PRIVATE],
    ['https://[::ffff:a9fe:a9fe]/', PRIVATE],
    ['https://[::127.0.0.1]/', PRIVATE],
    ['https://[64:ff9b::127.0.0.1]/', PRIVATE],
    ['https://[2002:7f00:1::]/', PRIVATE],
    ['https://[fd00::1]/', PRIVATE],
    ['https://[fe80::1]/', PRIVATE],
    ['https://[2001:db8::1]/', PRIVATE],
    // names that are never public
    ['https://localhost/', LOCAL_NAME],
    ['https://LOCALHOST./', LOCAL_NAME],
    ['https://api.localhost/', LOCAL_NAME],
    ['https://printer.local/', LOCAL_NAME],
    ['https://metadata.google.internal/', LOCAL_NAME],
    ['https://router.home.arpa/', LOCAL_NAME],
    ['https://intranet/', 'host must be a fully qualified domain name'],
    ['https://intranet./', 'host must be a fully qualified domain name'],
  ];
  for (const [input, reason] of cases) {
    t.same(checkCallbackUrl(input, STRICT), { ok: false, reason }, input.length > 80 ? `${input.slice(0, 80)}…` : input);
  }
  // a zone id is not even a valid URL host
  t.same(checkCallbackUrl('https://[fe80::1%25eth0]/', STRICT), { ok: false, reason: 'must be an absolute URL' });
});

t.test('checkCallbackUrl length limit is inclusive at 2048 characters', async (t) => {
  const prefix = 'https://hooks.example.com/';
  t.equal(checkCallbackUrl(prefix + 'a'.repeat(2048 - prefix.length), STRICT).ok, true);
  t.equal(checkCallbackUrl(prefix + 'a'.repeat(2049 - prefix.length), STRICT).ok, false);
  // percent-encoding on parse can push the stored form over the limit
  t.same(checkCallbackUrl(`${prefix}${' '.repeat(1000)}x`, STRICT), { ok: false, reason: 'must be at most 2048 characters' });
});

t.test('allowHttp and allowPrivateNetworks lift their own checks only', async (t) => {
  t.equal(checkCallbackUrl('http://hooks.example.com/', { ...STRICT, allowHttp: true }).ok, true);
  t.same(checkCallbackUrl('ftp://hooks.example.com/', { ...STRICT, allowHttp: true }), {
    ok: false,
    reason: 'must use https or http',
  });
  t.same(checkCallbackUrl('http://127.0.0.1:3000/', { ...STRICT, allowHttp: true }), {
    ok: false,
    reason: 'points to a private or reserved address',
  });
  t.same(checkCallbackUrl('http://127.0.0.1:3000/', { ...STRICT, allowPrivateNetworks: true }), {
    ok: false,
    reason: 'must use https',
  });
  for (const input of [
    'http://127.0.0.1:3000/hook',
    'http://localhost:3000/hook',
    'http://[::1]:3000/',
    'https://intranet/',
    'https://svc.internal/',
  ]) {
    t.equal(checkCallbackUrl(input, RELAXED).ok, true, input);
  }
  t.same(checkCallbackUrl('https://user:pw@localhost/', RELAXED), { ok: false, reason: 'must not contain credentials' });
});

t.test('allowedHosts: host:port entries allow that port only; without a port, only the scheme default', async (t) => {
  const policy: CallbackUrlPolicy = { ...STRICT, allowedHosts: ['hooks.partner.com:8443', '*.eu.partner.com:9000', 'plain.partner.com'] };
  const allowed = ['https://hooks.partner.com:8443/x', 'https://a.eu.partner.com:9000/x', 'https://plain.partner.com/x'];
  const refused = [
    'https://hooks.partner.com/x',
    'https://hooks.partner.com:8444/x',
    'https://a.eu.partner.com/x',
    'https://plain.partner.com:8443/x',
  ];
  for (const input of allowed) t.equal(checkCallbackUrl(input, policy).ok, true, `allowed: ${input}`);
  for (const input of refused) t.equal(checkCallbackUrl(input, policy).ok, false, `refused: ${input}`);
  // With the dev switch for http: port 80 is http's default; 443 is not.
  const http: CallbackUrlPolicy = { ...policy, allowHttp: true };
  t.equal(checkCallbackUrl('http://plain.partner.com/x', http).ok, true, 'http on 80');
  t.equal(checkCallbackUrl('http://plain.partner.com:443/x', http).ok, false, 'http on 443 is not a default port');
  t.equal(checkCallbackUrl('http://hooks.partner.com:8443/x', http).ok, true, 'an explicit port, whatever the scheme');
});

t.test('allowedHosts: exact (case-insensitive) and *.wildcard entries', async (t) => {
  const policy: CallbackUrlPolicy = {
    ...STRICT,
    allowedHosts: ['Hooks.Partner.com', '*.cdn.partner.net', 'bücher.example', '8.8.8.8', '[2606:4700:4700::1111]'],
  };
  const allowed = [
    'https://hooks.partner.com/x',
    'https://HOOKS.PARTNER.COM./x',
    'https://eu.cdn.partner.net/x',
    'https://a.b.cdn.partner.net:443/x', // the default port spelled out
    'https://xn--bcher-kva.example/x',
    'https://8.8.8.8/x',
    'https://134744072/x', // 8.8.8.8 spelled as a number
    'https://[2606:4700:4700:0::1111]/x',
  ];
  const refused = [
    'https://partner.com/x',
    'https://evil-hooks.partner.com/x',
    'https://hooks.partner.com.evil.com/x',
    'https://cdn.partner.net/x', // the wildcard covers subdomains only
    'https://evilcdn.partner.net/x',
    'https://1.1.1.1/x',
    'https://hooks.partner.com:8443/x', // an entry without a port allows the default port only
    'https://eu.cdn.partner.net:444/x',
    'https://hooks.partner.com:80/x', // 80 is http's default, not https's
  ];
  for (const input of allowed) t.equal(checkCallbackUrl(input, policy).ok, true, `allowed: ${input}`);
  for (const input of refused) {
    t.same(checkCallbackUrl(input, policy), { ok: false, reason: "host is not in this client's allowedCallbackHosts" }, input);
  }
  t.same(checkCallbackUrl('https://hooks.partner.com/x', { ...STRICT, allowedHosts: [] }), {
    ok: false,
    reason: "host is not in this client's allowedCallbackHosts",
  });
  // an allow-listed name still has to be public
  t.same(checkCallbackUrl('https://svc.internal/x', { ...STRICT, allowedHosts: ['svc.internal'] }), {
    ok: false,
    reason: 'points to a local or internal host name',
  });
  t.equal(isHostAllowed('api.example.com', ['*.EXAMPLE.com']), true);
  t.equal(isHostAllowed('api.example.com', ['*.example.com:8443'], { port: 8443, isDefault: false }), true);
  t.equal(isHostAllowed('example.com', ['*.example.com']), false);
});

// ---------------------------------------------------------------------------------------------------------------
// guardedLookup
// ---------------------------------------------------------------------------------------------------------------

type LookupResult = { error: NodeJS.ErrnoException | null; address: string | dns.LookupAddress[]; family?: number };

function runLookup(lookup: ReturnType<typeof guardedLookup>, hostname: string, options: dns.LookupOptions): Promise<LookupResult> {
  return new Promise((resolve) => {
    lookup(hostname, options, (error, address, family) => resolve({ error, address, family }));
  });
}

/** A stand-in resolver answering fixed records, so rebinding-style answers can be tested without DNS. */
function fixedResolver(addresses: string[]): NonNullable<Parameters<typeof guardedLookup>[0]['resolveAll']> {
  return (_hostname, _options, callback) =>
    process.nextTick(() =>
      callback(
        null,
        addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
      ),
    );
}

t.test('guardedLookup refuses a host resolving to loopback unless allowPrivate', async (t) => {
  for (const all of [false, true]) {
    const refused = await runLookup(guardedLookup({ allowPrivate: false }), 'localhost', { all });
    t.equal(refused.error?.code, FORBIDDEN_ADDRESS_ERROR_CODE, `all=${all}`);
    t.equal(refused.error?.message, 'callback host does not resolve to an allowed address', 'the address is not named');
    t.ok(isForbiddenAddressError(refused.error));

    const allowed = await runLookup(guardedLookup({ allowPrivate: true }), 'localhost', { all });
    t.equal(allowed.error, null);
    if (all) {
      t.ok(Array.isArray(allowed.address) && allowed.address.some((entry) => entry.address === '127.0.0.1'));
    } else {
      t.type(allowed.address, 'string');
      t.ok(allowed.family === 4 || allowed.family === 6);
    }
  }
});

t.test('guardedLookup refuses the host when ANY resolved address is forbidden', async (t) => {
  const mixed = guardedLookup({ allowPrivate: false, resolveAll: fixedResolver(['93.184.216.34', '10.0.0.5']) });
  const result = await runLookup(mixed, 'rebind.example', { all: true });
  t.equal(result.error?.code, FORBIDDEN_ADDRESS_ERROR_CODE);
  t.equal(result.error?.message, 'callback host does not resolve to an allowed address');
  t.match(result.error, { address: '10.0.0.5' }, 'the error object keeps the address for operators');

  const mapped = guardedLookup({ allowPrivate: false, resolveAll: fixedResolver(['::ffff:169.254.169.254']) });
  t.equal((await runLookup(mapped, 'metadata.example', {})).error?.code, FORBIDDEN_ADDRESS_ERROR_CODE);
});

t.test('guardedLookup passes public addresses on in both calling styles', async (t) => {
  const lookup = guardedLookup({ allowPrivate: false, resolveAll: fixedResolver(['2606:4700:4700::1111', '1.1.1.1']) });
  t.same(await runLookup(lookup, 'one.example', { all: true }), {
    error: null,
    address: [
      { address: '2606:4700:4700::1111', family: 6 },
      { address: '1.1.1.1', family: 4 },
    ],
    family: undefined,
  });
  t.same(await runLookup(lookup, 'one.example', {}), { error: null, address: '2606:4700:4700::1111', family: 6 });

  const empty = guardedLookup({ allowPrivate: false, resolveAll: fixedResolver([]) });
  t.equal((await runLookup(empty, 'nothing.example', {})).error?.code, 'ENOTFOUND');
});

t.test('guardedLookup passes resolver errors through', async (t) => {
  const failing = guardedLookup({
    allowPrivate: false,
    resolveAll: (_hostname, _options, callback) =>
      process.nextTick(() => callback(Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' }), [])),
  });
  t.equal((await runLookup(failing, 'missing.example', { all: true })).error?.code, 'ENOTFOUND');
});

// ---------------------------------------------------------------------------------------------------------------
// Real connections through the guarded agent (loopback only)
// ---------------------------------------------------------------------------------------------------------------

t.test('guarded agent: real connections to a loopback server', async (t) => {
  let requestsReceived = 0;
  const server = http.createServer((_request, response) => {
    requestsReceived += 1;
    response.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;

  const refusing = createGuardedAgent({ allowPrivate: false, timeoutMs: 2000 });
  const permitting = createGuardedAgent({ allowPrivate: true, timeoutMs: 2000, connections: 2 });
  t.teardown(async () => {
    await refusing.close();
    await permitting.close();
  });

  const cases: Array<[string, string]> = [
    ['IP literal', `http://127.0.0.1:${port}/hook`],
    ['IP literal, numeric spelling', `http://2130706433:${port}/hook`],
    ['IPv4-mapped IPv6 literal', `http://[::ffff:127.0.0.1]:${port}/hook`],
    ['DNS name', `http://localhost:${port}/hook`],
  ];
  for (const [label, url] of cases) {
    const error = await request(url, { method: 'POST', body: '{}', dispatcher: refusing }).then(
      () => null,
      (reason: unknown) => reason,
    );
    t.ok(isForbiddenAddressError(error), `${label}: refused with ${FORBIDDEN_ADDRESS_ERROR_CODE}`);
    t.match((error as Error | null)?.message, /^callback host (is a forbidden address|does not resolve to an allowed address)$/, label);
  }
  t.equal(requestsReceived, 0, 'the server received no request while refused');

  for (const [label, url] of cases) {
    if (label.includes('IPv6')) continue; // the server listens on IPv4 only
    const response = await request(url, { method: 'POST', body: '{}', dispatcher: permitting });
    t.equal(response.statusCode, 200, `${label}: allowed with allowPrivate`);
    t.equal(await response.body.text(), 'ok');
  }
  t.equal(requestsReceived, 3);
});

t.test('guarded agent: https goes through the same checks (refused before any TLS handshake)', async (t) => {
  const agent = createGuardedAgent({ allowPrivate: false, timeoutMs: 2000 });
  t.teardown(() => agent.close());
  for (const url of ['https://localhost:1/hook', 'https://[::1]:1/hook', 'https://169.254.169.254/latest/meta-data/']) {
    const error = await request(url, { dispatcher: agent }).then(
      () => null,
      (reason: unknown) => reason,
    );
    t.ok(isForbiddenAddressError(error), url);
  }
});

t.test('guarded agent never follows redirects', async (t) => {
  let targetHits = 0;
  const server = http.createServer((incoming, response) => {
    if (incoming.url === '/target') {
      targetHits += 1;
      response.end('followed');
      return;
    }
    response.writeHead(302, { location: '/target' }).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  const agent = createGuardedAgent({ allowPrivate: true, timeoutMs: 2000 });
  t.teardown(() => agent.close());

  const response = await request(`http://127.0.0.1:${port}/hook`, { method: 'POST', body: '{}', dispatcher: agent });
  t.equal(response.statusCode, 302);
  await response.body.dump();
  t.equal(targetHits, 0);
});
