import t from 'tap';

import { apiKey, setup } from './helpers/end-user-gateway.js';

/* Per-end-user limits (DESIGN §2.5): only valid creates count; one end user never spends its app's budget. */

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
