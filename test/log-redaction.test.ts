import { Writable } from 'node:stream';

import Fastify from 'fastify';
import t from 'tap';

import { withRedaction } from '../src/lib/log-redaction.js';
import { createSecretScrubber } from '../src/lib/secrets.js';

const elkapiKey = 'sk-elk-9f8e7d6c5b4a3f2e1d0c';
const clientKey = 'vgk_Zm9vYmFyYmF6cXV4MDEyMzQ1Njc4OWFiY2RlZg';
const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { lines, stream };
}

t.test('the scrubber removes credentials wherever they hide and keeps the line valid JSON', async (t) => {
  const { scrub } = createSecretScrubber({ exact: [elkapiKey, 'short'] });
  const line = JSON.stringify({
    msg: `called with ${elkapiKey}`,
    url: `/videos?api_key=${clientKey}&x=1`,
    error: `bad signature for ${secret}`,
    header: `Bearer ${clientKey.slice(4)}`,
    basic: `Basic ${Buffer.from('user:pass').toString('base64')}`,
    prose: 'Send `Authorization: Bearer <key>`.',
    short: 'short',
  });
  const scrubbed = scrub(line);
  const parsed = JSON.parse(scrubbed) as Record<string, string>;
  t.equal(parsed['msg'], 'called with [redacted]');
  t.equal(parsed['url'], '/videos?api_key=[redacted]&x=1');
  t.equal(parsed['error'], 'bad signature for [redacted]');
  t.equal(parsed['header'], '[redacted]');
  t.equal(parsed['basic'], '[redacted]');
  t.equal(parsed['prose'], 'Send `Authorization: Bearer <key>`.', 'prose about the scheme is left alone');
  t.equal(parsed['short'], 'short', 'values too short to be secrets are not treated as such');
});

t.test('redaction applies to a logger given with its own stream, level and redact paths', async (t) => {
  const { lines, stream } = capture();
  const app = Fastify({
    logger: withRedaction({ level: 'debug', stream, redact: ['custom.field'] }, 'info', createSecretScrubber({ exact: [elkapiKey] })),
  });
  t.teardown(() => app.close());
  t.equal(app.log.level, 'debug', 'the given level wins');
  app.log.debug({
    headers: { authorization: 'Token abc', accept: 'application/json' },
    upstream: { headers: { authorization: 'Token def' } },
    client: { id: 'alice', webhookSecret: 'whsec_x' },
    nested: { client: { webhookSecret: 'whsec_y' } },
    config: { elkapiApiKey: 'anything' },
    custom: { field: 'mine' },
  });
  const entry = JSON.parse(lines[0] ?? '{}') as {
    headers: Record<string, string>;
    upstream: { headers: Record<string, string> };
    client: Record<string, string>;
    nested: { client: Record<string, string> };
    config: Record<string, string>;
    custom: Record<string, string>;
  };
  t.same(entry.headers, { authorization: '[redacted]', accept: 'application/json' });
  t.same(entry.upstream.headers, { authorization: '[redacted]' });
  t.same(entry.client, { id: 'alice', webhookSecret: '[redacted]' });
  t.equal(entry.nested.client['webhookSecret'], '[redacted]');
  t.equal(entry.config['elkapiApiKey'], '[redacted]');
  t.equal(entry.custom['field'], '[redacted]', 'the caller’s own paths are kept');
});

t.test('a given stream hook still runs, before the scrub; `true` takes the configured level; `false` stays silent', async (t) => {
  const { lines, stream } = capture();
  const app = Fastify({
    logger: withRedaction(
      { level: 'info', stream, hooks: { streamWrite: (line) => line.replace('hello', `hello ${elkapiKey}`) } },
      'info',
      createSecretScrubber({ exact: [elkapiKey] }),
    ),
  });
  t.teardown(() => app.close());
  app.log.info('hello');
  t.match(lines[0], /"msg":"hello \[redacted\]"/);

  t.same(withRedaction(false, 'info', createSecretScrubber()), false);
  const enabled = withRedaction(true, 'warn', createSecretScrubber());
  t.match(enabled, { level: 'warn', redact: { censor: '[redacted]' } });
});
