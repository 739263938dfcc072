import type { webcrypto } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';
import type { Test } from 'tap';

/** A signing key of the test identity provider: its private half signs, its public JWK is published. */
export interface TestSigningKey {
  kid: string;
  alg: 'RS256' | 'ES256';
  privateKey: webcrypto.CryptoKey;
  publicJwk: JWK;
}

export async function newSigningKey(kid: string, alg: 'RS256' | 'ES256'): Promise<TestSigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicJwk };
}

/**
 * An identity provider's JWKS endpoint on real HTTP (127.0.0.1, port 0): publishes the keys it is given, counts
 * fetches, and can be stopped (then connections are refused) to prove cached keys keep working.
 */
export interface TestIdentityProvider {
  jwksUrl: string;
  /** Replaces the published keys (rotation). */
  publish(keys: TestSigningKey[]): void;
  fetches(): number;
  stop(): Promise<void>;
}

export async function startIdentityProvider(t: Test, keys: TestSigningKey[]): Promise<TestIdentityProvider> {
  let published = keys;
  let fetches = 0;
  const server: Server = createServer((request, response) => {
    if (request.url !== '/jwks.json') {
      response.writeHead(404).end();
      return;
    }
    fetches += 1;
    response
      .writeHead(200, { 'content-type': 'application/jwk-set+json' })
      .end(JSON.stringify({ keys: published.map((key) => key.publicJwk) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  t.teardown(stop);
  return {
    jwksUrl: `http://127.0.0.1:${port}/jwks.json`,
    publish: (next) => {
      published = next;
    },
    fetches: () => fetches,
    stop,
  };
}

/** A signed end-user token; `nowMs` is the test's clock, claims default to a 10-minute token. */
export async function signToken(
  key: TestSigningKey,
  claims: { iss: string; aud: string | string[]; sub?: string } & JWTPayload,
  nowMs: number,
  options: { expiresInSeconds?: number; header?: Record<string, unknown> } = {},
): Promise<string> {
  const nowSeconds = Math.floor(nowMs / 1000);
  return new SignJWT({ iat: nowSeconds, exp: nowSeconds + (options.expiresInSeconds ?? 600), ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...options.header })
    .sign(key.privateKey);
}
