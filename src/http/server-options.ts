import type { ServerOptions } from 'node:http';

import type { FastifyServerOptions } from 'fastify';

import type { ClientRegistry } from '../auth/clients.js';
import type { Config } from '../config.js';
import type { IdSource } from '../ids.js';
import { type LoggerOption, withRedaction } from '../lib/log-redaction.js';
import { createSecretScrubber } from '../lib/secrets.js';
import { answerClientError, answerFrameworkError } from './request-parsing.js';

const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

export interface ServerOptionsInput {
  config: Config;
  clients: ClientRegistry;
  ids: IdSource;
  /** Fastify/pino logger options (tests pass a stream to capture lines); redaction is always added. */
  logger?: LoggerOption;
}

/**
 * How often Node looks for connections past their headers or request timeout (its default, 30 s, would let a
 * 10 s limit run to 40 s): a quarter of the shorter limit, between 10 ms and 1 s.
 */
export const timeoutCheckIntervalMs = ({ headersTimeoutMs, requestTimeoutMs }: Config['http']): number =>
  Math.min(1000, Math.max(10, Math.floor(Math.min(headersTimeoutMs, requestTimeoutMs) / 4)));

/** What Fastify needs at construction, before any plugin: logging, request ids, body and URL limits, timeouts. */
export function gatewayServerOptions({ config, clients, ids, logger }: ServerOptionsInput): FastifyServerOptions & { http: ServerOptions } {
  const scrubber = createSecretScrubber({
    exact: [
      ...[config.elkapiApiKey, config.metricsToken].filter((secret) => secret !== null),
      ...clients.all().map((client) => client.webhookSecret),
    ],
    isClientKey: (candidate) => clients.isApiKey(candidate),
  });
  return {
    // Redaction applies to every logger, a test's capturing stream included.
    logger: withRedaction(logger, config.logLevel, scrubber),
    bodyLimit: 64 * 1024,
    // Fastify 5 defaults requestTimeout and connectionTimeout to 0 (off), which also switches off Node's own
    // limit: a client trickling a body one byte at a time would hold its connection (and a descriptor) forever.
    requestTimeout: config.http.requestTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
    connectionTimeout: config.http.connectionTimeoutMs,
    http: {
      headersTimeout: config.http.headersTimeoutMs,
      requestTimeout: config.http.requestTimeoutMs,
      connectionsCheckingInterval: timeoutCheckIntervalMs(config.http),
    },
    genReqId: (request) => {
      const given = request.headers['x-request-id'];
      // A credential sent as a request id would be echoed in every answer and log line: replace it, whatever its shape.
      return typeof given === 'string' && requestIdPattern.test(given) && !scrubber.isSecret(given) ? given : ids.requestId();
    },
    ajv: { customOptions: { removeAdditional: false } },
    routerOptions: { maxParamLength: 200 },
    // Malformed or overlong URLs are refused before routing: still as problems.
    frameworkErrors: answerFrameworkError,
    // What Node's parser refuses (431, malformed HTTP, timeouts) is a problem too.
    clientErrorHandler: answerClientError(() => ids.requestId()),
  };
}
