/**
 * Log redaction, in two layers, applied to every logger the app builds (tests' capturing streams included):
 *   1. pino `redact` paths blank known fields (authorization headers, keys, secrets) wherever they are logged;
 *   2. a last-chance scrub of each serialized line removes the exact configured secrets and anything shaped like a
 *      credential wherever it hides — a secret inside an error message — because a path list only covers the
 *      shapes someone thought of;
 *   3. the logged request URL has its credential-like query values redacted (`?api_key=`, a bare client key),
 *      whatever their shape (src/lib/secrets.ts).
 */
import type { FastifyRequest, FastifyServerOptions } from 'fastify';

import { redactedText, type SecretScrubber } from './secrets.js';

const redactPaths: readonly string[] = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'req.headers["idempotency-key"]',
  'headers.authorization',
  '*.headers.authorization',
  '*.authorization',
  'apiKey',
  '*.apiKey',
  'elkapiApiKey',
  '*.elkapiApiKey',
  'webhookSecret',
  '*.webhookSecret',
  '*.*.webhookSecret',
  'secret',
  '*.secret',
];

export type LoggerOption = FastifyServerOptions['logger'];

/**
 * The Fastify `logger` option with redaction always on: given options (a test's stream, a level) are kept,
 * their own redact paths and stream hook are extended, never replaced. `false` stays silent.
 */
export function withRedaction(given: LoggerOption, level: string, scrubber: SecretScrubber): LoggerOption {
  if (given === false) return false;
  const base = typeof given === 'object' ? given : { level };
  const givenRedact = base.redact;
  const givenPaths = givenRedact === undefined ? [] : Array.isArray(givenRedact) ? givenRedact : givenRedact.paths;
  const givenWrite = base.hooks?.streamWrite;
  const { scrub } = scrubber;
  return {
    ...base,
    serializers: {
      // Fastify's own request fields, with the URL's query redacted.
      req: (request: FastifyRequest) => ({
        method: request.method,
        url: scrubber.redactUrl(request.url),
        version: [request.headers['accept-version']].flat()[0],
        host: request.host,
        remoteAddress: request.ip,
        remotePort: request.socket?.remotePort,
      }),
      ...base.serializers,
    },
    redact: { paths: [...new Set([...redactPaths, ...givenPaths])], censor: redactedText },
    hooks: {
      ...base.hooks,
      streamWrite: givenWrite === undefined ? scrub : (line) => scrub(givenWrite(line)),
    },
  };
}
