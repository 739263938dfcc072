import { decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';

import type { Clock } from '../clock.js';
import type { Logger } from '../lib/logger.js';
import type { Client, ClientRegistry } from './clients.js';
import { createJwksCache, type JwksCache, type JwksCacheOptions, JwksUnavailable } from './jwks.js';

/*
 * End-user tokens (DESIGN §2.7): a JWT from the app's own identity provider, verified against the JWKS of the
 * client whose `endUsers` names the token's issuer and audience. Pure rules plus the cached key sets; no HTTP framework.
 */

/** Far above any real ID token (~1 KiB); a longer bearer is refused before it is even decoded. */
export const maxTokenLength = 8 * 1024;
/** `exp` / `nbf` leeway for clocks that disagree a little. */
export const clockToleranceSeconds = 30;
/** DESIGN §2.1 `endUserId`. */
export const endUserIdPattern = /^[A-Za-z0-9._:@|-]{1,128}$/;

/** Three base64url segments: what a compact JWS looks like (an API key never has a dot). */
export const looksLikeJwt = (token: string): boolean => /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);

export type EndUserVerification = { ok: true; client: Client; endUserId: string } | { ok: false; detail: string };

export interface EndUserTokenVerifier {
  /** Never throws; a refusal's `detail` says which check failed and never quotes the token. */
  verify(token: string): Promise<EndUserVerification>;
}

export interface EndUserTokenVerifierOptions {
  clients: Pick<ClientRegistry, 'forTokenIssuer' | 'all'>;
  clock: Clock;
  logger: Logger;
  /** JWKS_ALLOW_HTTP: fetch `http:` key sets (development only); the clients file is checked at load too. */
  allowHttp: boolean;
  /** Key-set fetch options (tests shorten nothing here: the clock is injected). */
  jwks?: Pick<JwksCacheOptions, 'timeoutMs' | 'maxBytes' | 'refreshCooldownMs' | 'maxAgeMs'>;
}

const refuse = (detail: string): EndUserVerification => ({ ok: false, detail: `End-user token refused: ${detail}.` });

/** A jose failure as the one check it names. */
function describeFailure(error: unknown): string {
  if (error instanceof JwksUnavailable) return `${error.message}; try again shortly`;
  if (error instanceof joseErrors.JWTExpired) return 'it has expired (exp)';
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case 'nbf':
        return 'it is not valid yet (nbf)';
      case 'iat':
        return 'its issued-at time (iat) is in the future';
      case 'iss':
        return 'wrong issuer (iss)';
      case 'aud':
        return 'wrong audience (aud)';
      case 'exp':
        return 'it has no expiry (exp)';
      case 'sub':
        return 'it has no subject (sub)';
      default:
        return `claim ${error.claim} is invalid`;
    }
  }
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return 'its algorithm (alg) is not allowed';
  if (error instanceof joseErrors.JWKSNoMatchingKey) return "no key of the issuer's JWKS matches its key id (kid)";
  if (error instanceof joseErrors.JWKSMultipleMatchingKeys) return "several keys of the issuer's JWKS match it; send a key id (kid)";
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'the signature does not verify';
  if (error instanceof joseErrors.JOSENotSupported) return 'its algorithm or key type is not supported';
  return 'it is not a well-formed signed JWT';
}

export function createEndUserTokenVerifier(options: EndUserTokenVerifierOptions): EndUserTokenVerifier {
  const { clients, clock, logger } = options;
  const knownIssuers = new Set(clients.all().flatMap((client) => (client.endUsers === null ? [] : [client.endUsers.issuer])));
  /** One cache per key-set URL: clients sharing an identity provider share its keys. */
  const caches = new Map<string, JwksCache>();
  const cacheFor = (url: string): JwksCache => {
    let cache = caches.get(url);
    if (cache === undefined) {
      cache = createJwksCache({ ...options.jwks, url, clock, logger });
      caches.set(url, cache);
    }
    return cache;
  };

  return {
    async verify(token) {
      if (token.length > maxTokenLength) return refuse(`it is longer than ${maxTokenLength} characters`);
      if (!looksLikeJwt(token)) return refuse('it is not a compact JWT (three base64url parts)');
      let header: ReturnType<typeof decodeProtectedHeader>;
      let claims: ReturnType<typeof decodeJwt>;
      try {
        header = decodeProtectedHeader(token);
        claims = decodeJwt(token);
      } catch {
        return refuse('it is not a well-formed JWT');
      }
      if (header.alg === undefined || header.alg === 'none') return refuse('unsigned tokens (alg none) are never accepted');
      // Which client: the unverified iss + aud only choose whose keys and rules to verify against.
      const audiences = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : [];
      const client = typeof claims.iss === 'string' ? clients.forTokenIssuer(claims.iss, audiences) : undefined;
      if (client?.endUsers == null) {
        if (typeof claims.iss !== 'string' || !knownIssuers.has(claims.iss))
          return refuse('wrong issuer (iss): no client accepts its tokens');
        return refuse('wrong audience (aud): no client of this issuer accepts it');
      }
      const policy = client.endUsers;
      if (!(policy.algorithms as string[]).includes(header.alg)) return refuse(`its algorithm (alg ${header.alg}) is not allowed`);
      if (!policy.jwksUrl.startsWith('https://') && !options.allowHttp) return refuse("the client's JWKS URL is not https");
      try {
        const { payload } = await jwtVerify(token, cacheFor(policy.jwksUrl).getKey, {
          issuer: policy.issuer,
          audience: policy.audience,
          algorithms: policy.algorithms,
          clockTolerance: clockToleranceSeconds,
          currentDate: new Date(clock.now()),
          requiredClaims: ['exp', 'sub'],
        });
        if (typeof payload.sub !== 'string' || !endUserIdPattern.test(payload.sub)) {
          return refuse('its subject (sub) is not an end-user id (1 to 128 of A-Z a-z 0-9 . _ : @ | -)');
        }
        return { ok: true, client, endUserId: payload.sub };
      } catch (error) {
        return refuse(describeFailure(error));
      }
    },
  };
}
