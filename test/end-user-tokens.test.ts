import { SignJWT } from 'jose';
import t from 'tap';

import { alice, base64url, bob, expectUnauthorized, setup } from './helpers/end-user-gateway.js';
import { newSigningKey, signToken, startIdentityProvider } from './helpers/identity-provider.js';

/* End-user tokens (DESIGN §2.7): every check, the JWKS cache, and the attacks tried. */

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
