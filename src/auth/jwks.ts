import { createLocalJWKSet, errors as joseErrors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { request } from 'undici';

import type { Clock } from '../clock.js';
import type { Logger } from '../lib/logger.js';

/*
 * A cached JSON Web Key Set (DESIGN §2.7) over jose's `createLocalJWKSet`. Hand-written rather than jose's
 * `createRemoteJWKSet` because the gateway needs three things it does not offer: the injected clock (the "at most
 * one refresh per 30 s" rule is tested without waiting), a response-size cap, and keys that keep working when the
 * endpoint is down after the cache's age has passed (jose then fails every verification until it answers again).
 */

/** Why no key could be found: the set could not be fetched, or it has no key for the token. */
export class JwksUnavailable extends Error {
  override readonly name = 'JwksUnavailable';
}

export interface JwksCacheOptions {
  url: string;
  clock: Clock;
  logger: Logger;
  /** Whole fetch, connect to last byte. Default 5 s. */
  timeoutMs?: number;
  /** Bytes of JSON accepted. Default 64 KiB (a JWKS of a few keys is ~2 KiB). */
  maxBytes?: number;
  /** An unknown `kid` refetches the set at most this often. Default 30 s. */
  refreshCooldownMs?: number;
  /** Past this age the set is refetched on next use; if that fails, the cached keys keep working. Default 10 min. */
  maxAgeMs?: number;
}

export interface JwksCache {
  /** For `jwtVerify`: the key of the token's header, refetching the set on an unknown `kid` (rate limited). */
  getKey: JWTVerifyGetKey;
}

/** GETs a JWKS: no redirects, a deadline, a size cap. Throws a one-line Error naming what failed. */
export async function fetchJwks(url: string, options: { timeoutMs: number; maxBytes: number }): Promise<JSONWebKeySet> {
  const signal = AbortSignal.timeout(options.timeoutMs);
  const response = await request(url, {
    method: 'GET',
    headers: { accept: 'application/jwk-set+json, application/json' },
    signal,
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
  });
  if (response.statusCode !== 200) {
    await response.body.dump();
    throw new Error(`JWKS answered HTTP ${response.statusCode}`);
  }
  const declared = Number(response.headers['content-length']);
  if (Number.isFinite(declared) && declared > options.maxBytes) {
    await response.body.dump();
    throw new Error(`JWKS is larger than ${options.maxBytes} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response.body) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
    size += buffer.length;
    if (size > options.maxBytes) {
      response.body.destroy();
      throw new Error(`JWKS is larger than ${options.maxBytes} bytes`);
    }
    chunks.push(buffer);
  }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new Error('JWKS is not JSON');
  }
  if (typeof json !== 'object' || json === null || !Array.isArray((json as { keys?: unknown }).keys)) {
    throw new Error('JWKS has no "keys" array');
  }
  return json as JSONWebKeySet;
}

export function createJwksCache(options: JwksCacheOptions): JwksCache {
  const { url, clock, logger } = options;
  const timeoutMs = options.timeoutMs ?? 5_000;
  const maxBytes = options.maxBytes ?? 64 * 1024;
  const cooldownMs = options.refreshCooldownMs ?? 30_000;
  const maxAgeMs = options.maxAgeMs ?? 10 * 60_000;

  let keys: ReturnType<typeof createLocalJWKSet> | null = null;
  let fetchedAt = Number.NEGATIVE_INFINITY;
  let attemptedAt = Number.NEGATIVE_INFINITY;
  /** One fetch at a time: concurrent verifications of a new kid share it. */
  let inFlight: Promise<void> | null = null;

  const refresh = (): Promise<void> => {
    inFlight ??= (async () => {
      attemptedAt = clock.now();
      try {
        const set = await fetchJwks(url, { timeoutMs, maxBytes });
        keys = createLocalJWKSet(set);
        fetchedAt = clock.now();
      } catch (error) {
        // Never the body: a misconfigured URL could point at anything.
        logger.warn(
          { jwksUrl: url, reason: error instanceof Error ? error.message : String(error) },
          'JWKS fetch failed; cached keys stay in use',
        );
      } finally {
        inFlight = null;
      }
    })();
    return inFlight;
  };

  const mayRefresh = (): boolean => clock.now() - attemptedAt >= cooldownMs;

  return {
    async getKey(header, token) {
      if (keys === null || clock.now() - fetchedAt >= maxAgeMs) {
        if (mayRefresh()) await refresh();
        else if (inFlight !== null) await inFlight;
      }
      if (keys === null) throw new JwksUnavailable("the identity provider's signing keys (JWKS) could not be fetched");
      try {
        return await keys(header, token);
      } catch (error) {
        if (!(error instanceof joseErrors.JWKSNoMatchingKey) || !mayRefresh()) throw error;
      }
      // An unknown kid: the provider may have rotated its keys. Refetch once, then decide.
      await refresh();
      return keys(header, token);
    },
  };
}
