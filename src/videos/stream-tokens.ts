import { createHmac, timingSafeEqual } from 'node:crypto';

import type { Clock } from '../clock.js';

/*
 * Stream tokens (DESIGN §2.4): a browser's EventSource cannot send `Authorization`, so `POST
 * /videos/{id}/stream-tokens` mints a short-lived token for `GET /videos/{id}/events?token=…`. Stateless: the
 * token carries what it grants and an HMAC over it, keyed with `deriveKey(GATEWAY_SECRET, 'stream-tokens')`, so
 * any replica with the same secret accepts it and nothing is stored.
 *
 * Shape: `vst_<payload>.<mac>`, both base64url; payload = `v1.<clientId>.<videoId>.<expiresAt epoch seconds>`,
 * then for an end user's token `.u<base64url of the end user id>` (a `sub` may contain `.`), so the stream it opens
 * is read as that end user and never shows another end user's video. Client ids (`[A-Za-z0-9_-]`) and video ids
 * (`vid_…`) contain no `.`. The payload is readable, not secret: the MAC is what makes it unforgeable. It grants
 * reading one video's event stream, nothing else.
 */

/** DESIGN §2.4: five minutes, enough to open (and reopen) a stream; a reconnect after that needs a new token. */
export const streamTokenLifetimeMs = 5 * 60_000;

const prefix = 'vst_';
const version = 'v1';
/** Above a real token (~120 characters; ~400 with the longest end user id); bounds the work an absurd query parameter can cause. */
const maxTokenLength = 512;

export interface StreamTokenGrant {
  clientId: string;
  /** The end user the token was minted by; null → minted by the app server (the client's API key). */
  endUserId: string | null;
  videoId: string;
  /** Epoch ms, a whole second. */
  expiresAt: number;
}

export interface StreamTokens {
  /** A token for this client's (and end user's, when not null) video, valid `streamTokenLifetimeMs` from now. */
  mint(clientId: string, endUserId: string | null, videoId: string): { token: string; expiresAt: number };
  /** The grant of a valid, unexpired token for `videoId`; undefined for anything else (forged, expired, other video). */
  verify(token: string, videoId: string): StreamTokenGrant | undefined;
}

const mac = (key: Buffer, payload: string): Buffer => createHmac('sha256', key).update(payload).digest();

/** Signs a grant. Pure. */
export function signStreamToken(key: Buffer, grant: StreamTokenGrant): string {
  const endUser = grant.endUserId === null ? '' : `.u${Buffer.from(grant.endUserId).toString('base64url')}`;
  const payload = `${version}.${grant.clientId}.${grant.videoId}.${Math.floor(grant.expiresAt / 1000)}${endUser}`;
  return `${prefix}${Buffer.from(payload).toString('base64url')}.${mac(key, payload).toString('base64url')}`;
}

/** The grant a token carries when its MAC is valid (constant-time compare); expiry is not checked here. Pure. */
export function readStreamToken(key: Buffer, token: string): StreamTokenGrant | undefined {
  if (token.length > maxTokenLength || !token.startsWith(prefix)) return undefined;
  const [encodedPayload, encodedMac, ...rest] = token.slice(prefix.length).split('.');
  if (encodedPayload === undefined || encodedMac === undefined || rest.length > 0) return undefined;
  const payload = Buffer.from(encodedPayload, 'base64url').toString('utf8');
  const expected = mac(key, payload);
  const given = Buffer.from(encodedMac, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  const [tokenVersion, clientId, videoId, expiresAtSeconds, endUser, ...extra] = payload.split('.');
  if (tokenVersion !== version || clientId === undefined || videoId === undefined || extra.length > 0) return undefined;
  if (expiresAtSeconds === undefined || !/^[0-9]{1,12}$/.test(expiresAtSeconds)) return undefined;
  let endUserId: string | null = null;
  if (endUser !== undefined) {
    if (!/^u[A-Za-z0-9_-]+$/.test(endUser)) return undefined;
    endUserId = Buffer.from(endUser.slice(1), 'base64url').toString('utf8');
    if (endUserId.length === 0) return undefined;
  }
  return { clientId, endUserId, videoId, expiresAt: Number(expiresAtSeconds) * 1000 };
}

/** Stream tokens keyed with `key` (derive it: `deriveKey(secret, 'stream-tokens')`), expiring on `clock`. */
export function createStreamTokens(options: { key: Buffer; clock: Clock; lifetimeMs?: number }): StreamTokens {
  const { key, clock } = options;
  const lifetimeMs = options.lifetimeMs ?? streamTokenLifetimeMs;
  return {
    mint(clientId, endUserId, videoId) {
      // Whole seconds, rounded down: the token never outlives what `expiresAt` promises.
      const expiresAt = Math.floor((clock.now() + lifetimeMs) / 1000) * 1000;
      return { token: signStreamToken(key, { clientId, endUserId, videoId, expiresAt }), expiresAt };
    },
    verify(token, videoId) {
      const grant = readStreamToken(key, token);
      if (grant === undefined || grant.videoId !== videoId || clock.now() >= grant.expiresAt) return undefined;
      return grant;
    },
  };
}
