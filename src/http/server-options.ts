import type { ServerOptions } from 'node:http';

import type { FastifyServerOptions } from 'fastify';

import type { ClientRegistry } from '../auth/clients.js';
import type { Config } from '../config.js';
import type { IdSource } from '../ids.js';
import { createSecretScrubber, type LoggerOption, withRedaction } from '../lib/log-redaction.js';
import { answerFrameworkError } from './request-parsing.js';

const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

export interface ServerOptionsInput {
  config: Config;
  clients: ClientRegistry;
  ids: IdSource;
  /** Fastify/pino logger options (tests pass a stream to capture lines); redaction is always added. */
  logger?: LoggerOption;
}

/** What Fastify needs at construction, before any plugin: logging, request ids, body and URL limits. */
export function gatewayServerOptions({ config, clients, ids, logger }: ServerOptionsInput): FastifyServerOptions & { http: ServerOptions } {
  const scrubSecrets = createSecretScrubber([
    ...(config.elkapiApiKey === null ? [] : [config.elkapiApiKey]),
    ...clients.all().map((client) => client.webhookSecret),
  ]);
  return {
    // Redaction applies to every logger, a test's capturing stream included.
    logger: withRedaction(logger, config.logLevel, scrubSecrets),
    bodyLimit: 64 * 1024,
    // Node's 16 KiB header limit would answer an oversized bearer with a bare 431; at 32 KiB it reaches the
    // authenticator, which refuses any token over 8 KiB with a 401 problem before decoding it.
    http: { maxHeaderSize: 32 * 1024 },
    genReqId: (request) => {
      const given = request.headers['x-request-id'];
      // A credential sent as a request id would be echoed in every answer and log line: replace it.
      return typeof given === 'string' && requestIdPattern.test(given) && scrubSecrets(given) === given ? given : ids.requestId();
    },
    ajv: { customOptions: { removeAdditional: false } },
    routerOptions: { maxParamLength: 200 },
    // Malformed or overlong URLs are refused before routing: still as problems.
    frameworkErrors: answerFrameworkError,
  };
}
