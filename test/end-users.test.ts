import t from 'tap';

import type { Video } from '../schemas/video.js';
import { apiKey, bob, createAs, listIds, setup } from './helpers/end-user-gateway.js';

/* End users (DESIGN §2.7): scoping and deletes of their own videos. */

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
