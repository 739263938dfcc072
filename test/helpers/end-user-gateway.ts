import type { Test } from 'tap';

import type { Video } from '../../schemas/video.js';
import { createClientRegistry } from '../../src/auth/clients.js';
import { auth, startTestGateway, testClientsFile, type TestGateway } from './gateway.js';
import { newSigningKey, signToken, startIdentityProvider, type TestIdentityProvider, type TestSigningKey } from './identity-provider.js';

/*
 * A gateway with end users (DESIGN §2.7) over real HTTP: it listens on 127.0.0.1, and its clients' identity
 * provider publishes a JWKS from a real HTTP server with RS256 and ES256 keys made by jose.
 */

export const alice = { issuer: 'https://id.alice.test', audience: 'alice-app' };
export const bob = { issuer: 'https://id.bob.test', audience: 'bob-app' };

export interface Setup {
  gw: TestGateway;
  base: string;
  idp: TestIdentityProvider;
  rsa: TestSigningKey;
  ec: TestSigningKey;
  /** A 10-minute token of alice's provider (RS256 unless `key` says otherwise). */
  token(sub: string, options?: { key?: TestSigningKey; issuer?: typeof alice }): Promise<string>;
  call(method: string, path: string, credential: string | undefined, body?: unknown, headers?: Record<string, string>): Promise<Response>;
}

export async function setup(
  t: Test,
  limits: { endUserCreateLimitPerMinute?: number; endUserRateLimitPerMinute?: number } = {},
  gateway: { gatewaySecret?: Buffer } = {},
): Promise<Setup> {
  const rsa = await newSigningKey('rsa-1', 'RS256');
  const ec = await newSigningKey('ec-1', 'ES256');
  const idp = await startIdentityProvider(t, [rsa, ec]);
  const clients = createClientRegistry(
    {
      clients: testClientsFile.clients.map((client) => ({
        ...client,
        endUsers: { ...(client.id === 'alice' ? alice : bob), jwksUrl: idp.jwksUrl },
        ...limits,
      })),
    },
    { allowHttpJwks: true },
  );
  const gw = await startTestGateway(t, { env: { JWKS_ALLOW_HTTP: 'true' }, gateway: { clients, ...gateway } });
  const address = await gw.app.listen({ port: 0, host: '127.0.0.1' });
  return {
    gw,
    base: address,
    idp,
    rsa,
    ec,
    token: (sub, options = {}) => {
      const issuer = options.issuer ?? alice;
      return signToken(options.key ?? rsa, { iss: issuer.issuer, aud: issuer.audience, sub }, gw.clock.now());
    },
    call: (method, path, credential, body, headers = {}) =>
      fetch(`${address}${path}`, {
        method,
        headers: {
          ...(credential === undefined ? {} : { authorization: `Bearer ${credential}` }),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      }),
  };
}

export const apiKey = (who: 'alice' | 'bob' = 'alice'): string => (auth(who).authorization ?? '').slice('Bearer '.length);
export const base64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

export async function expectUnauthorized(t: Test, response: Response, detail: RegExp, token: string, message: string): Promise<void> {
  const body = await response.text();
  t.equal(response.status, 401, `${message}: 401`);
  t.equal(response.headers.get('content-type'), 'application/problem+json; charset=utf-8', `${message}: a problem`);
  const problem = JSON.parse(body) as { code: string; detail: string };
  t.equal(problem.code, 'unauthorized');
  t.match(problem.detail, detail, `${message}: the detail names the check`);
  for (const part of token.split('.').filter((segment) => segment.length >= 8)) {
    t.notOk(body.includes(part), `${message}: the token is never echoed`);
  }
}

export const createAs = async (s: Setup, credential: string, body: Record<string, unknown> = { prompt: 'A tiger walking in snow' }) => {
  const response = await s.call('POST', '/videos', credential, body);
  if (response.status !== 202) throw new Error(`create failed: ${response.status} ${await response.text()}`);
  return (await response.json()) as Video;
};

export const listIds = async (s: Setup, credential: string, query = ''): Promise<string[]> => {
  const response = await s.call('GET', `/videos${query}`, credential);
  if (response.status !== 200) throw new Error(`list failed: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { data: Video[] }).data.map((video) => video.id);
};
