/**
 * Log redaction, in two layers, applied to every logger the app builds (tests' capturing streams included):
 *   1. pino `redact` paths blank known fields (authorization headers, keys, secrets) wherever they are logged;
 *   2. a last-chance scrub of each serialized line removes anything that looks like a credential wherever it
 *      hides — a client key pasted into a query string, a secret inside an error message — because a path list
 *      only covers the shapes someone thought of.
 */
import type { FastifyServerOptions } from 'fastify';

const redactedText = '[redacted]';

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

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** How a string appears inside a JSON log line. */
const asJsonText = (text: string): string => JSON.stringify(text).slice(1, -1);

/**
 * Replaces credentials in one serialized log line. The replacements hold no quote or backslash, so the line
 * stays valid JSON. `knownSecrets` are exact values (the ElkAPI key, webhook secrets); client keys are only known
 * by their hash, so they are caught by their `vgk_` prefix, like any `whsec_` secret or `Bearer`/`Basic` credential.
 */
export function createSecretScrubber(knownSecrets: readonly string[]): (line: string) => string {
  const exact = [...new Set(knownSecrets.filter((secret) => secret.length >= 8).map(asJsonText))]
    .sort((a, b) => b.length - a.length)
    .map(escapeRegExp);
  const patterns = [
    ...exact,
    '\\bvgk_[A-Za-z0-9_-]{8,}',
    '\\bwhsec_[A-Za-z0-9+/=]{8,}',
    // An end user's JWT anywhere (a query string, an error message): a JSON header and payload, base64url.
    '\\beyJ[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]*',
    // RFC 6750 token68 characters, so prose such as "Bearer <key>" is left alone.
    '\\b(?:Bearer|Basic)\\s+[A-Za-z0-9._~+/-]+=*',
  ];
  const credential = new RegExp(patterns.join('|'), 'gi');
  return (line) => line.replace(credential, redactedText);
}

export type LoggerOption = FastifyServerOptions['logger'];

/**
 * The Fastify `logger` option with redaction always on: given options (a test's stream, a level) are kept,
 * their own redact paths and stream hook are extended, never replaced. `false` stays silent.
 */
export function withRedaction(given: LoggerOption, level: string, scrub: (line: string) => string): LoggerOption {
  if (given === false) return false;
  const base = typeof given === 'object' ? given : { level };
  const givenRedact = base.redact;
  const givenPaths = givenRedact === undefined ? [] : Array.isArray(givenRedact) ? givenRedact : givenRedact.paths;
  const givenWrite = base.hooks?.streamWrite;
  return {
    ...base,
    redact: { paths: [...new Set([...redactPaths, ...givenPaths])], censor: redactedText },
    hooks: {
      ...base.hooks,
      streamWrite: givenWrite === undefined ? scrub : (line) => scrub(givenWrite(line)),
    },
  };
}
