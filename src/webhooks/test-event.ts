/**
 * `POST /webhooks/test` (DESIGN §2.4): one signed `webhook.test` event sent now to a URL the client names, so a
 * partner can check its endpoint before the first real video. The same rules as real deliveries: the request-time
 * callback policy (https, no private IP literal, `allowedCallbackHosts`), the SSRF-guarded agent (every resolved
 * address checked), the client's own secret, the attempt timeout, no redirects followed. Nothing is stored.
 */
import type { Dispatcher } from 'undici';

import type { WebhookTestEvent, WebhookTestResult } from '../../schemas/deliveries.js';
import type { Client } from '../auth/clients.js';
import { type Clock, toIso } from '../clock.js';
import type { IdSource } from '../ids.js';
import type { Logger } from '../lib/logger.js';
import type { CallbackUrlValidator } from './callback-policy.js';
import { describeNetworkError } from './dispatcher.js';
import { signWebhook } from './payload.js';

export interface WebhookTesterOptions {
  agent: Dispatcher;
  checkCallbackUrl: CallbackUrlValidator;
  clock: Clock;
  ids: Pick<IdSource, 'messageId'>;
  logger: Logger;
  timeoutMs: number;
  /** Measures the attempt (monotonic). Default `performance.now`. */
  monotonic?: () => number;
}

export interface WebhookTester {
  send(client: Client, callbackUrl: string): Promise<WebhookTestResult>;
}

/** The body of a test event: `data` names no video, only that this is a test. */
export function buildTestEvent(client: Pick<Client, 'id'>, at: number): WebhookTestEvent {
  return {
    type: 'webhook.test',
    timestamp: toIso(at),
    data: { clientId: client.id, message: 'A test event from the video gateway: verify its signature, then answer 2xx.' },
  };
}

export function createWebhookTester(options: WebhookTesterOptions): WebhookTester {
  const { agent, clock, ids, logger, timeoutMs } = options;
  const monotonic = options.monotonic ?? (() => performance.now());
  return {
    async send(client, callbackUrl) {
      // A refusal is a 400 naming /body/callbackUrl, exactly as on POST /videos.
      const url = new URL(options.checkCallbackUrl(callbackUrl, client));
      const at = clock.now();
      const messageId = ids.messageId();
      const body = JSON.stringify(buildTestEvent(client, at));
      const started = monotonic();
      const deadline = AbortSignal.timeout(timeoutMs);
      let responseStatus: number | null = null;
      let error: string | null = null;
      try {
        const response = await agent.request({
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          method: 'POST',
          headers: { ...signWebhook(client.webhookSecret, messageId, at, body), 'user-agent': 'video-gateway-webhooks/1' },
          body,
          signal: deadline,
        });
        responseStatus = response.statusCode;
        await response.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
        if (responseStatus >= 300 && responseStatus < 400) error = 'redirects are not followed';
      } catch (caught) {
        error = deadline.aborted ? `no answer within ${timeoutMs} ms` : describeNetworkError(caught);
      }
      const durationMs = Math.max(0, Math.round(monotonic() - started));
      const delivered = responseStatus !== null && responseStatus >= 200 && responseStatus < 300;
      logger.info({ clientId: client.id, messageId, responseStatus, durationMs, delivered }, 'test webhook sent');
      return { messageId, callbackUrl: url.href, delivered, responseStatus, durationMs, error };
    },
  };
}
