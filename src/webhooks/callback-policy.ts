/**
 * Request-time check of `callbackUrl` on `POST /videos` (DESIGN §4.4): the gateway's switches plus the client's
 * `allowedCallbackHosts`. A refusal is `ValidationFailed` naming the field.
 */
import type { Client } from '../auth/clients.js';
import { ValidationFailed } from '../errors.js';
import { checkCallbackUrl, checkImageUrl } from './callback-url.js';

export interface CallbackPolicyOptions {
  /** WEBHOOK_ALLOW_HTTP */
  allowHttp: boolean;
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS */
  allowPrivateNetworks: boolean;
}

/** Returns the normalised URL to store (WHATWG-serialised: host lower-cased, IPv4 spellings canonical). */
export type CallbackUrlValidator = (url: string, client: Client) => string;

export function createCallbackUrlValidator(options: CallbackPolicyOptions): CallbackUrlValidator {
  return (url, client) => {
    const check = checkCallbackUrl(url, {
      allowHttp: options.allowHttp,
      allowPrivateNetworks: options.allowPrivateNetworks,
      allowedHosts: client.allowedCallbackHosts,
    });
    if (check.ok) return check.url.href;
    throw new ValidationFailed(`callbackUrl ${check.reason}.`, [{ path: '/body/callbackUrl', message: check.reason }]);
  };
}

/** Refuses a keyframe `imageUrl` the upstream must not be sent to fetch (a private or local address); throws ValidationFailed. */
export type ImageUrlValidator = (url: string, position: 'start' | 'end') => void;

export function createImageUrlValidator(options: Pick<CallbackPolicyOptions, 'allowPrivateNetworks'>): ImageUrlValidator {
  return (url, position) => {
    const check = checkImageUrl(url, options.allowPrivateNetworks);
    if (check.ok) return;
    throw new ValidationFailed(`keyframes.${position}.imageUrl ${check.reason}.`, [
      { path: `/body/keyframes/${position}/imageUrl`, message: check.reason },
    ]);
  };
}
