import { SignJWT } from 'jose';
import t, { type Test } from 'tap';

import type { Video } from '../schemas/video.js';
import { createClientRegistry } from '../src/auth/clients.js';
import { auth, startTestGateway, testClientsFile, type TestGateway } from './helpers/gateway.js';
import {
  newSigningKey,
  signToken,
  startIdentityProvider,
  type TestIdentityProvider,
  type TestSigningKey,
} from './helpers/identity-provider.js';

/*
 * End users (DESIGN §2.7) over real HTTP: the gateway listens on 127.0.0.1, and each client's identity provider
 * publishes its JWKS from a real HTTP server with RS256 and ES256 keys made by jose here.
 */

const alice = { issuer: 'https://id.alice.test', audience: 'alice-app' };
const bob = { issuer: 'https://id.bob.test', audience: 'bob-app' };

interface Setup {
  gw: TestGateway;
  base: string;
  idp: TestIdentityProvider;
  rsa: TestSigningKey;
  ec: TestSigningKey;
  /** A 10-minute token of alice's provider (RS256 unless `key` says otherwise). */
  token(sub: string, options?: { key?: TestSigningKey; issuer?: typeof alice }): Promise<string>;
  call(method: string, path: string, credential: string | undefined, body?: unknown, headers?: Record<string, string>): Promise<Response>;
}

async function setup(t: Test, limits: { endUserCreateLimitPerMinute?: number; endUserRateLimitPerMinute?: number } = {}): Promise<Setup> {
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
  const gw = await startTestGateway(t, { env: { JWKS_ALLOW_HTTP: 'true' }, gateway: { clients } });
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

const apiKey = (who: 'alice' | 'bob' = 'alice'): string => (auth(who).authorization ?? '').slice('Bearer '.length);
const base64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

async function expectUnauthorized(t: Test, response: Response, detail: RegExp, token: string, message: string): Promise<void> {
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

t.test('valid RS256 and ES256 tokens authenticate an end user; each check that fails is a 401 naming it', async (t) => {
  const s = await setup(t);
  const now = s.gw.clock.now();
  const nowSeconds = Math.floor(now / 1000);

  for (const key of [s.rsa, s.ec]) {
    const response = await s.call('GET', '/videos', await s.token('user_1', { key }));
    t.equal(response.status, 200, `${key.alg} token accepted`);
    t.same(await response.json(), { data: [], nextCursor: null });
  }
  t.equal(s.idp.fetches(), 1, 'the JWKS is fetched once and cached');

  const claims = { iss: alice.issuer, aud: alice.audience, sub: 'user_1' };
  const cases: Array<[string, string, RegExp]> = [
    ['expired', await signToken(s.rsa, { ...claims, exp: nowSeconds - 60 }, now), /expired \(exp\)/],
    ['not yet valid', await signToken(s.rsa, { ...claims, nbf: nowSeconds + 120 }, now), /not valid yet \(nbf\)/],
    ['wrong iss', await signToken(s.rsa, { ...claims, iss: 'https://id.evil.test' }, now), /wrong issuer \(iss\)/],
    ['wrong aud', await signToken(s.rsa, { ...claims, aud: 'someone-else' }, now), /wrong audience \(aud\)/],
    ['no sub', await signToken(s.rsa, { iss: alice.issuer, aud: alice.audience }, now), /subject \(sub\)/],
    ['sub not an id', await signToken(s.rsa, { ...claims, sub: 'has space' }, now), /subject \(sub\)/],
    ['alg none', `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({ ...claims, exp: nowSeconds + 600 })}.`, /alg none/],
    ['garbage', 'not.a.jwt', /not a well-formed JWT/],
    ['unknown API key', 'vgk_not_a_real_key_0123456789', /Unknown API key/],
  ];
  // HS256 "signed" with the RSA public key, the classic algorithm-confusion forgery.
  const publicPem = JSON.stringify(s.rsa.publicJwk);
  cases.push([
    'HS256 with the public key',
    await new SignJWT({ ...claims, exp: nowSeconds + 600 })
      .setProtectedHeader({ alg: 'HS256', kid: s.rsa.kid })
      .sign(new TextEncoder().encode(publicPem)),
    /algorithm \(alg HS256\) is not allowed/,
  ]);
  // A valid token whose payload is swapped for another end user's: the signature no longer matches.
  const [header, , signature] = (await s.token('user_1')).split('.');
  cases.push(['tampered payload', `${header}.${base64url({ ...claims, sub: 'user_2', exp: nowSeconds + 600 })}.${signature}`, /signature/]);
  const huge = `${base64url({ alg: 'RS256' })}.${'A'.repeat(20 * 1024)}.${'B'.repeat(64)}`;
  cases.push(['a 20 KB token', huge, /longer than 8192 characters/]);

  for (const [name, token, detail] of cases) await expectUnauthorized(t, await s.call('GET', '/videos', token), detail, token, name);
  t.equal(s.idp.fetches(), 1, 'none of these refetched the JWKS (the 20 KB one was not even decoded)');

  const missing = await s.call('GET', '/videos', undefined);
  t.equal(missing.status, 401);
  t.match(((await missing.json()) as { detail: string }).detail, /No credential/);

  const leeway = await signToken(s.rsa, { ...claims, exp: nowSeconds - 10 }, now);
  t.equal((await s.call('GET', '/videos', leeway)).status, 200, 'expired 10 s ago: within the 30 s leeway');
  const early = await signToken(s.rsa, { ...claims, nbf: nowSeconds + 20 }, now);
  t.equal((await s.call('GET', '/videos', early)).status, 200, 'valid in 20 s: within the leeway');
});

t.test('unknown kid: one JWKS refresh, then at most one per 30 s; rotation is picked up; cached keys outlive the JWKS', async (t) => {
  const s = await setup(t);
  t.equal((await s.call('GET', '/videos', await s.token('user_1'))).status, 200);
  t.equal(s.idp.fetches(), 1);

  const ghost = await newSigningKey('ghost', 'RS256');
  const ghostToken = await s.token('user_1', { key: ghost });
  s.gw.clock.advance(31_000);
  await expectUnauthorized(t, await s.call('GET', '/videos', ghostToken), /key id \(kid\)/, ghostToken, 'unknown kid');
  t.equal(s.idp.fetches(), 2, 'an unknown kid refetched the JWKS once');
  await expectUnauthorized(t, await s.call('GET', '/videos', ghostToken), /key id \(kid\)/, ghostToken, 'unknown kid again');
  t.equal(s.idp.fetches(), 2, 'within 30 s no second refetch: unknown kids cannot hammer the provider');

  // Rotation: the provider publishes a new key; tokens signed with it work once the cooldown has passed.
  const rotated = await newSigningKey('rsa-2', 'RS256');
  s.idp.publish([rotated, s.ec]);
  const rotatedToken = await s.token('user_1', { key: rotated });
  s.gw.clock.advance(10_000);
  t.equal((await s.call('GET', '/videos', rotatedToken)).status, 401, '10 s after the last refresh: not yet refetched');
  t.equal(s.idp.fetches(), 2);
  s.gw.clock.advance(21_000);
  t.equal((await s.call('GET', '/videos', await s.token('user_1', { key: rotated }))).status, 200, 'the new kid is picked up');
  t.equal(s.idp.fetches(), 3);

  // The provider goes away: the cached keys keep working, even past the cache's age.
  await s.idp.stop();
  s.gw.clock.advance(11 * 60_000);
  t.equal((await s.call('GET', '/videos', await s.token('user_1', { key: rotated }))).status, 200, 'JWKS down: cached keys work');
  t.equal((await s.call('GET', '/videos', await s.token('user_2', { key: s.ec }))).status, 200, 'every cached key');
  const unknown = await s.token('user_1', { key: ghost });
  t.equal((await s.call('GET', '/videos', unknown)).status, 401, 'an unknown kid is still refused');
});

t.test('a JWKS that never answered: 401 saying the keys are unavailable, without a fetch per request', async (t) => {
  const s = await setup(t);
  await s.idp.stop();
  const token = await s.token('user_1');
  await expectUnauthorized(t, await s.call('GET', '/videos', token), /signing keys \(JWKS\) could not be fetched/, token, 'JWKS down');
});

const createAs = async (s: Setup, credential: string, body: Record<string, unknown> = { prompt: 'A tiger walking in snow' }) => {
  const response = await s.call('POST', '/videos', credential, body);
  if (response.status !== 202) throw new Error(`create failed: ${response.status} ${await response.text()}`);
  return (await response.json()) as Video;
};

const listIds = async (s: Setup, credential: string, query = ''): Promise<string[]> => {
  const response = await s.call('GET', `/videos${query}`, credential);
  if (response.status !== 200) throw new Error(`list failed: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { data: Video[] }).data.map((video) => video.id);
};

t.test('two end users of one client and one of another: each sees and lists only its own', async (t) => {
  const s = await setup(t);
  const u1 = await s.token('user_1');
  const u2 = await s.token('user_2');
  const u3 = await s.token('user_1', { issuer: bob }); // same sub, other client

  const v1 = await createAs(s, u1);
  const v2 = await createAs(s, u2);
  const v3 = await createAs(s, u3);
  t.equal(v1.endUserId, 'user_1', 'the Video shows its end user');
  t.equal(v2.endUserId, 'user_2');
  t.equal(v3.endUserId, 'user_1');
  const byApp = await createAs(s, apiKey('alice'), { prompt: 'A tiger walking in snow', endUserId: 'user_1' });
  t.equal(byApp.endUserId, 'user_1', 'an app server creates for one of its end users');
  const appOwn = await createAs(s, apiKey('alice'));
  t.equal(appOwn.endUserId, null);

  t.same(await listIds(s, u1), [byApp.id, v1.id], 'user_1 lists its own, the app server’s one for it included');
  t.same(await listIds(s, u2), [v2.id]);
  t.same(await listIds(s, u3), [v3.id], "bob's user_1 is another person");
  t.same(await listIds(s, u1, '?endUserId=user_1'), [byApp.id, v1.id], 'an end user may name itself');
  const otherFilter = await s.call('GET', '/videos?endUserId=user_2', u1);
  t.equal(otherFilter.status, 400, "an end user cannot list another's");
  t.same(await listIds(s, apiKey('alice')), [appOwn.id, byApp.id, v2.id, v1.id], 'the app server sees all of its client');
  t.same(await listIds(s, apiKey('alice'), '?endUserId=user_2'), [v2.id], 'and filters by end user');
  t.same(await listIds(s, apiKey('bob'), '?endUserId=user_1'), [v3.id]);

  t.equal((await s.call('GET', `/videos/${v1.id}`, u1)).status, 200, 'reads its own');
  const unknownId = 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC';
  const notFound = async (id: string, credential: string, suffix = '') => {
    const response = await s.call('GET', `/videos/${id}${suffix}`, credential, undefined, { 'x-request-id': 'req-same' });
    return { status: response.status, body: await response.text() };
  };
  const unknown = await notFound(unknownId, u1);
  t.equal(unknown.status, 404);
  for (const [name, id, credential] of [
    ["another end user's video", v2.id, u1],
    ["the app server's own video", appOwn.id, u1],
    ["another client's end user's video", v3.id, u1],
    ["another client's video (same sub)", v1.id, u3],
  ] as const) {
    t.same(await notFound(id, credential), unknown, `${name}: 404 byte-identical to an unknown id`);
    t.same(await notFound(id, credential, '?wait=1'), { ...unknown }, `${name}: long-poll 404 too`);
    const events = await notFound(id, credential, '/events');
    t.equal(events.status, 404, `${name}: no event stream`);
  }
  t.equal((await s.call('GET', `/videos/${v2.id}`, apiKey('alice'))).status, 200, 'the app server reads every video of its client');

  const callback = await s.call('POST', '/videos', u1, { prompt: 'A tiger walking in snow', callbackUrl: 'https://hooks.example/x' });
  t.equal(callback.status, 400);
  const callbackProblem = (await callback.json()) as { detail: string; errors: Array<{ path: string }> };
  t.match(callbackProblem.detail, /End users cannot set callbackUrl/);
  t.same(
    callbackProblem.errors.map((error) => error.path),
    ['/body/callbackUrl'],
  );
  const impersonate = await s.call('POST', '/videos', u1, { prompt: 'A tiger walking in snow', endUserId: 'user_2' });
  t.equal(impersonate.status, 400, 'an end user cannot create for another');
  t.equal((await createAs(s, u1, { prompt: 'A tiger walking in snow', endUserId: 'user_1' })).endUserId, 'user_1', 'or name itself');

  for (const [method, path] of [
    ['GET', `/videos/${v1.id}/deliveries`],
    ['POST', `/videos/${v1.id}/deliveries/redeliver`],
  ] as const) {
    const response = await s.call(method, path, u1);
    t.equal(response.status, 403, `${method} ${path}: 403`);
    const problem = (await response.json()) as { code: string; detail: string };
    t.equal(problem.code, 'forbidden');
    t.match(problem.detail, /for app servers/);
  }
  t.equal((await s.call('GET', `/videos/${v1.id}/deliveries`, apiKey('alice'))).status, 200, 'the app server reads deliveries');

  // Idempotency keys are per end user: the same key from another end user is a new request, never a replay.
  const key = { 'idempotency-key': 'same-key-1' };
  const first = await s.call('POST', '/videos', u1, { prompt: 'A fox in the rain' }, key);
  const second = await s.call('POST', '/videos', u2, { prompt: 'A fox in the rain' }, key);
  t.equal(first.status, 202);
  t.equal(second.status, 202);
  t.equal(second.headers.get('idempotent-replayed'), null, "another end user's key is not replayed");
  t.not(((await first.json()) as Video).id, ((await second.json()) as Video).id);
  const replay = await s.call('POST', '/videos', u1, { prompt: 'A fox in the rain' }, key);
  t.equal(replay.headers.get('idempotent-replayed'), 'true', 'the same end user replays');
});

t.test('keyframes may only reference the end user’s own completed videos', async (t) => {
  const s = await setup(t);
  const u1 = await s.token('user_1');
  const u2 = await s.token('user_2');
  const v2 = await createAs(s, u2);
  const stored = await s.gw.store.videos.get(v2.id);
  if (stored === undefined) throw new Error('not stored');
  const response = await s.call('POST', '/videos', u1, { prompt: 'A tiger walking in snow', keyframes: { start: { videoId: v2.id } } });
  t.equal(response.status, 400, "another end user's video is not a keyframe source");
});

t.test('per-end-user limits: invalid creates spend nothing; one end user past its limit leaves the others alone', async (t) => {
  const s = await setup(t);
  const u1 = await s.token('user_1');
  const u2 = await s.token('user_2');
  for (let i = 0; i < 30; i++) {
    const invalid = await s.call('POST', '/videos', u1, { prompt: 'x' });
    if (invalid.status !== 400) t.fail(`invalid create ${i}: ${invalid.status}`);
  }
  t.equal(
    (await s.call('POST', '/videos', u2, { prompt: 'A tiger walking in snow' })).status,
    202,
    '30 invalid creates of user_1: user_2 creates',
  );
  t.equal((await s.call('POST', '/videos', u1, { prompt: 'A tiger walking in snow' })).status, 202, 'and user_1 itself still may');

  for (let i = 2; i <= 5; i++)
    t.equal((await s.call('POST', '/videos', u1, { prompt: 'A tiger walking in snow' })).status, 202, `create ${i}`);
  const sixth = await s.call('POST', '/videos', u1, { prompt: 'A tiger walking in snow' });
  t.equal(sixth.status, 429, 'user_1 is past its 5 creates a minute');
  const problem = (await sixth.json()) as { code: string; detail: string };
  t.equal(problem.code, 'rate_limited');
  t.match(problem.detail, /video creations for this end user: at most 5 per minute/);
  t.ok(Number(sixth.headers.get('retry-after')) >= 1);
  const forUser1 = await s.call('POST', '/videos', apiKey('alice'), { prompt: 'A tiger walking in snow', endUserId: 'user_1' });
  t.equal(forUser1.status, 429, "an app server creating for user_1 spends user_1's budget too");
  t.equal((await s.call('POST', '/videos', u2, { prompt: 'A tiger walking in snow' })).status, 202, 'user_2 still creates');
  t.equal((await s.call('POST', '/videos', apiKey('alice'), { prompt: 'A tiger walking in snow' })).status, 202, 'so does the app server');
  t.equal((await s.call('GET', '/videos', u1)).status, 200, 'user_1 still reads');

  s.gw.clock.advance(60_000);
  t.equal((await s.call('POST', '/videos', u1, { prompt: 'A tiger walking in snow' })).status, 202, 'a new window after a minute');
});

t.test('endUserRateLimitPerMinute: one end user past its request limit; its client and the other end users go on', async (t) => {
  const s = await setup(t, { endUserRateLimitPerMinute: 3 });
  const u1 = await s.token('user_1');
  for (let i = 1; i <= 3; i++) {
    const response = await s.call('GET', '/videos', u1);
    t.equal(response.status, 200);
    t.equal(response.headers.get('x-ratelimit-limit'), '3', 'the tighter, end-user limit is reported');
    t.equal(response.headers.get('x-ratelimit-remaining'), String(3 - i));
  }
  const limited = await s.call('GET', '/videos', u1);
  t.equal(limited.status, 429);
  t.match(((await limited.json()) as { detail: string }).detail, /requests for this end user/);
  t.equal((await s.call('GET', '/videos', await s.token('user_2'))).status, 200, 'another end user is not affected');
  const app = await s.call('GET', '/videos', apiKey('alice'));
  t.equal(app.status, 200, 'nor the app server');
  t.equal(app.headers.get('x-ratelimit-remaining'), String(600 - 5), "user_1's refused request spent none of the client's budget");
  const named = await s.call('GET', '/videos?endUserId=user_1', apiKey('alice'));
  t.equal(named.status, 429, 'an app server naming user_1 counts against user_1 too');
});

t.test('attacks: a token cannot choose the keys it is checked with, nor cross to another client', async (t) => {
  const s = await setup(t);
  const attacker = await newSigningKey('attacker-1', 'RS256');
  const attackerIdp = await startIdentityProvider(t, [attacker]);
  const nowMs = s.gw.clock.now();

  // JWKS poisoning: jku / x5u / an embedded jwk point the verifier at the attacker's keys; they are never used or fetched.
  const poisoned = await signToken(attacker, { iss: alice.issuer, aud: alice.audience, sub: 'user_1' }, nowMs, {
    header: { jku: attackerIdp.jwksUrl, x5u: attackerIdp.jwksUrl, jwk: attacker.publicJwk },
  });
  await expectUnauthorized(t, await s.call('GET', '/videos', poisoned), /key id \(kid\)/, poisoned, 'jku/x5u/jwk headers');
  t.equal(attackerIdp.fetches(), 0, 'the URL in the token was never fetched (no SSRF through a token)');
  // Same kid as a real key, the attacker's signature: the real key does not verify it.
  const sameKid = await signToken({ ...attacker, kid: s.rsa.kid }, { iss: alice.issuer, aud: alice.audience, sub: 'user_1' }, nowMs);
  await expectUnauthorized(t, await s.call('GET', '/videos', sameKid), /signature/, sameKid, 'a forged kid');

  // Token confusion between clients: alice's token re-labelled for bob (iss/aud swapped) breaks its signature, and a
  // token naming both audiences is ambiguous.
  const aliceToken = await s.token('user_1');
  const [header, , signature] = aliceToken.split('.');
  const relabelled = `${header}.${base64url({ iss: bob.issuer, aud: bob.audience, sub: 'user_1', exp: Math.floor(nowMs / 1000) + 600 })}.${signature}`;
  await expectUnauthorized(t, await s.call('GET', '/videos', relabelled), /signature/, relabelled, 'relabelled for another client');
  const both = await signToken(s.rsa, { iss: alice.issuer, aud: [alice.audience, bob.audience], sub: 'user_1' }, nowMs);
  t.equal((await s.call('GET', '/videos', both)).status, 200, 'one issuer, several audiences: the one client of that issuer');
  const crossIssuer = await signToken(s.rsa, { iss: bob.issuer, aud: alice.audience, sub: 'user_1' }, nowMs);
  await expectUnauthorized(t, await s.call('GET', '/videos', crossIssuer), /wrong audience/, crossIssuer, "bob's issuer, alice's audience");
  t.equal(attackerIdp.fetches(), 0);
});

t.test('an end user deletes its own videos only', async (t) => {
  const s = await setup(t);
  const u1 = await s.token('user_1');
  const u2 = await s.token('user_2');
  const own = await createAs(s, u1);
  const others = await createAs(s, u2);
  const refused = await s.call('DELETE', `/videos/${others.id}`, u1);
  t.equal(refused.status, 404, "another end user's video is not found");
  t.ok(await s.gw.store.videos.get(others.id), 'and is still stored');
  t.equal((await s.call('DELETE', `/videos/${own.id}`, u1)).status, 204, 'its own is deleted');
  t.equal(await s.gw.store.videos.get(own.id), undefined);
  t.equal((await s.call('GET', `/videos/${own.id}`, u1)).status, 404, 'then 404');
  t.equal((await s.call('DELETE', `/videos/${others.id}`, apiKey('alice'))).status, 204, 'the app server deletes any of its client');
});
