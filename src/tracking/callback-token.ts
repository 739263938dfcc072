import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';

import { deriveKey } from '../secrets/gateway-secret.js';

/*
 * The token in an upstream callback URL (`<base>/upstream/callbacks/<token>`, DESIGN §4.1). The upstream's callbacks
 * are unsigned, so the URL itself is the credential: only the gateway can mint a valid one, and it names the video
 * without revealing its id (or the upstream's) to anyone who sees the URL.
 *
 *   mac   = HMAC-SHA256(deriveKey(secret, 'upstream-callbacks'), videoId)           32 bytes
 *   body  = AES-256-CTR(deriveKey(secret, 'upstream-callbacks/id'), iv = mac[0..16], videoId)
 *   token = base64url(body ‖ mac)
 *
 * A synthetic-IV construction (as in SIV): the MAC doubles as the IV, so the token is deterministic (the same video
 * always gets the same URL, on every replica with the same GATEWAY_SECRET) and needs nothing stored. Checking it
 * decrypts the id and recomputes the MAC, compared in constant time; any change to any byte fails. Built from
 * node:crypto primitives because Node has no AES-SIV/GCM-SIV on every OpenSSL it ships with.
 */

const macBytes = 32;
const ivBytes = 16;
/** Far above any video id (`vid_` + 26 characters): a longer token is refused before any crypto. */
const maxTokenLength = 256;
const tokenPattern = /^[A-Za-z0-9_-]+$/;

export interface CallbackTokens {
  /** The token for a video id. Pure. */
  issue(videoId: string): string;
  /** The video id a token names, or undefined when it was not issued under this secret. */
  verify(token: string): string | undefined;
}

export function createCallbackTokens(gatewaySecret: Buffer): CallbackTokens {
  const macKey = deriveKey(gatewaySecret, 'upstream-callbacks');
  const encryptionKey = deriveKey(gatewaySecret, 'upstream-callbacks/id');
  const mac = (id: Buffer): Buffer => createHmac('sha256', macKey).update(id).digest();

  return {
    issue(videoId) {
      const id = Buffer.from(videoId, 'utf8');
      const tag = mac(id);
      const cipher = createCipheriv('aes-256-ctr', encryptionKey, tag.subarray(0, ivBytes));
      return Buffer.concat([cipher.update(id), cipher.final(), tag]).toString('base64url');
    },
    verify(token) {
      if (token.length > maxTokenLength || !tokenPattern.test(token)) return undefined;
      const raw = Buffer.from(token, 'base64url');
      if (raw.length <= macBytes || raw.toString('base64url') !== token) return undefined;
      const tag = raw.subarray(raw.length - macBytes);
      const decrypt = createDecipheriv('aes-256-ctr', encryptionKey, tag.subarray(0, ivBytes));
      const id = Buffer.concat([decrypt.update(raw.subarray(0, raw.length - macBytes)), decrypt.final()]);
      return timingSafeEqual(mac(id), tag) ? id.toString('utf8') : undefined;
    },
  };
}

/** `<base>/upstream/callbacks/<token>`: the `callback_url` a create passes upstream. */
export const callbackUrl = (baseUrl: string, token: string): string => `${baseUrl.replace(/\/+$/, '')}/upstream/callbacks/${token}`;
