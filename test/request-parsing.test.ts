import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';

import t from 'tap';

import type { Problem } from '../schemas/problem.js';
import { auth, startTestGateway } from './helpers/gateway.js';

t.test('malformed URLs are refused before routing with a 400 problem that carries the request id', async (t) => {
  const gw = await startTestGateway(t);
  for (const url of ['/videos/%zz', '/videos/vid_%E0%A4%A', `/videos/${'v'.repeat(500)}`]) {
    const response = await gw.app.inject({ method: 'GET', url, headers: { ...auth(), 'x-request-id': 'mobile-77' } });
    t.equal(response.statusCode, 400, url.slice(0, 40));
    t.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8');
    t.equal(response.headers['x-request-id'], 'mobile-77');
    t.match(response.json(), { code: 'validation_failed', requestId: 'mobile-77', errors: [{ path: '/url' }] });
  }
});

t.test('JSON bodies must be UTF-8: invalid bytes are a 400, never a mangled prompt sent upstream', async (t) => {
  const gw = await startTestGateway(t);
  const invalid = Buffer.concat([Buffer.from('{"prompt":"A tiger '), Buffer.from([0xff, 0xfe]), Buffer.from(' in snow"}')]);
  const refused = await gw.app.inject({
    method: 'POST',
    url: '/videos',
    headers: { ...auth(), 'content-type': 'application/json' },
    payload: invalid,
  });
  t.equal(refused.statusCode, 400);
  t.match(refused.json(), { code: 'validation_failed', errors: [{ path: '/body', message: 'is not valid UTF-8' }] });

  // Multi-byte characters are fine, and prototype poisoning is still refused by Fastify's parser underneath.
  const prompt = '雪の中を歩く虎 🐅';
  const accepted = await gw.app.inject({
    method: 'POST',
    url: '/videos',
    headers: { ...auth(), 'content-type': 'application/json' },
    payload: Buffer.from(JSON.stringify({ prompt }), 'utf8'),
  });
  t.equal(accepted.statusCode, 202);
  t.equal(accepted.json().prompt, prompt);
  const poisoned = await gw.app.inject({
    method: 'POST',
    url: '/videos',
    headers: { ...auth(), 'content-type': 'application/json' },
    payload: '{"prompt":"A tiger walking","__proto__":{"x":1}}',
  });
  t.equal(poisoned.statusCode, 400);
  t.equal(gw.sandbox.stats.creates, 1);
});

t.test('inputs that used to slip through validation are refused before the upstream', async (t) => {
  const gw = await startTestGateway(t);
  const cases: Array<[string, object, string]> = [
    ['a prompt of blanks', { prompt: '      \n\t   ' }, '/body/prompt'],
    ['a prompt shorter than 3 once trimmed', { prompt: '   ab   ' }, '/body/prompt'],
    [
      'an https URL without a host',
      { prompt: 'A tiger walking', keyframes: { start: { imageUrl: 'https://' } } },
      '/body/keyframes/start/imageUrl',
    ],
    ['an empty metadata key', { prompt: 'A tiger walking', metadata: { '': 'v' } }, '/body/metadata'],
    ['a metadata key over 100 characters', { prompt: 'A tiger walking', metadata: { ['k'.repeat(101)]: 'v' } }, '/body/metadata'],
  ];
  for (const [name, payload, path] of cases) {
    const response = await gw.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload });
    t.equal(response.statusCode, 400, name);
    t.ok(
      (response.json<Problem>().errors ?? []).some((error) => error.path.startsWith(path)),
      `${name}: reported at ${path}`,
    );
  }
  t.equal(gw.sandbox.stats.creates, 0, 'none reached the upstream');
  const padded = await gw.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: { prompt: '  a b  ' } });
  t.equal(padded.statusCode, 202, 'three characters once trimmed are enough');
  t.equal(padded.json().prompt, 'a b');
});

t.test('invisible characters count as blank: a prompt of zero-width or bidi characters is refused, never paid for', async (t) => {
  const gw = await startTestGateway(t);
  const invisible = [
    '\u200B\u200B\u200B', // zero-width spaces
    '\u200C\u200D\u2060\uFEFF', // zero-width non-joiner, joiner, word joiner, BOM
    '\u202E\u202D\u2066\u2069', // bidi overrides and isolates
    '\u00AD\u00AD\u00AD', // soft hyphens
    '\u3164\u3164\u3164', // Hangul fillers
    '\u2800\u2800\u2800', // braille blanks
    '\uFE0F\uFE0F\u034F', // variation selectors, combining grapheme joiner
    '\u{E0041}\u{E0042}\u{E0043}', // tag characters
  ];
  for (const prompt of invisible) {
    const response = await gw.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: { prompt } });
    t.equal(response.statusCode, 400, JSON.stringify(prompt));
    t.match(response.json<Problem>().errors, [
      { path: '/body/prompt', message: 'needs at least 3 characters besides blanks and invisible characters' },
    ]);
  }
  t.equal(gw.sandbox.stats.creates, 0, 'none reached the upstream');

  // Invisible edges are trimmed like spaces; inside a prompt (an emoji ZWJ sequence, a variation selector) they stay.
  const prompt = '\u200B\u202E A tiger 👨‍👩‍👧 ❤️\uFEFF\u200B ';
  const accepted = await gw.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: { prompt } });
  t.equal(accepted.statusCode, 202);
  t.equal(accepted.json().prompt, 'A tiger 👨‍👩‍👧 ❤️');
});

t.test('keyframe image URLs get the callback URL’s address rules: private, loopback, metadata → 400, never fetched', async (t) => {
  const gw = await startTestGateway(t);
  const refused = [
    'https://127.0.0.1/frame.jpg',
    'https://2130706433/frame.jpg',
    'https://[::1]/frame.jpg',
    'https://[::ffff:10.0.0.5]/frame.jpg',
    'https://10.20.30.40/frame.jpg',
    'https://192.168.1.1/frame.jpg',
    'https://169.254.169.254/latest/meta-data/',
    'https://metadata.google.internal/computeMetadata/v1/',
    'https://localhost/frame.jpg',
    'https://printer/frame.jpg',
    'https://user:secret@cdn.example.com/frame.jpg',
  ];
  for (const [index, imageUrl] of refused.entries()) {
    const position = index % 2 === 0 ? 'start' : 'end';
    const response = await gw.app.inject({
      method: 'POST',
      url: '/videos',
      headers: auth(),
      payload: { prompt: 'A tiger walking in snow', keyframes: { [position]: { imageUrl } } },
    });
    t.equal(response.statusCode, 400, imageUrl);
    t.match(response.json<Problem>(), { code: 'validation_failed', errors: [{ path: `/body/keyframes/${position}/imageUrl` }] });
  }
  t.equal(gw.sandbox.stats.creates, 0, 'none reached (or was billed by) the upstream');

  const accepted = await gw.app.inject({
    method: 'POST',
    url: '/videos',
    headers: auth(),
    payload: { prompt: 'A tiger walking in snow', keyframes: { start: { imageUrl: 'https://cdn.example.com/frame.jpg?sig=abc' } } },
  });
  t.equal(accepted.statusCode, 202, 'a public image URL is fine');
  t.equal(gw.sandbox.stats.creates, 1);
});

t.test('a compressed body is refused with 415 and Accept-Encoding: identity, never parsed as if plain', async (t) => {
  const gw = await startTestGateway(t);
  const body = Buffer.from(JSON.stringify({ prompt: 'A tiger walking in snow' }));
  const encoded: Array<[string, Buffer]> = [
    ['gzip', gzipSync(body)],
    ['deflate', deflateSync(body)],
    ['br', brotliCompressSync(body)],
    ['GZIP, identity', gzipSync(body)],
  ];
  for (const [encoding, payload] of encoded) {
    const response = await gw.app.inject({
      method: 'POST',
      url: '/videos',
      headers: { ...auth(), 'content-type': 'application/json', 'content-encoding': encoding },
      payload,
    });
    t.equal(response.statusCode, 415, encoding);
    t.equal(response.headers['accept-encoding'], 'identity');
    t.match(response.json<Problem>(), { code: 'unsupported_media_type', detail: /must not be compressed/ });
  }
  const unauthenticated = await gw.app.inject({
    method: 'POST',
    url: '/videos',
    headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
    payload: gzipSync(body),
  });
  t.equal(unauthenticated.statusCode, 401, 'authentication comes first');
  t.equal(gw.sandbox.stats.creates, 0);

  const identity = await gw.app.inject({
    method: 'POST',
    url: '/videos',
    headers: { ...auth(), 'content-type': 'application/json', 'content-encoding': 'identity' },
    payload: body,
  });
  t.equal(identity.statusCode, 202, '`identity` is no encoding at all');
});
