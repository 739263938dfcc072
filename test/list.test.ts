import t from 'tap';

import type { VideoList } from '../schemas/list.js';
import { decodeCursor, encodeCursor } from '../src/videos/cursor.js';
import { advanceAndPoll, auth, createVideo, startTestGateway, type TestGateway } from './helpers/gateway.js';

const list = async (gw: TestGateway, query = '', who: 'alice' | 'bob' = 'alice') => {
  const response = await gw.app.inject({ method: 'GET', url: `/videos${query}`, headers: auth(who) });
  return { response, page: response.json<VideoList>() };
};

/** Creates `count` videos one millisecond apart (ids are time-sortable), oldest first. */
async function createMany(gw: TestGateway, count: number, prefix = 'Video'): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    gw.clock.advance(1);
    ids.push((await createVideo(gw, { prompt: `${prefix} number ${i}` })).id);
  }
  return ids;
}

t.test('cursors', async (t) => {
  const id = 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC';
  const cursor = encodeCursor(id);
  t.match(cursor, /^[A-Za-z0-9_-]+$/, 'URL-safe');
  t.notMatch(cursor, /vid_/, 'opaque');
  t.equal(decodeCursor(cursor), id, 'round trip');
  for (const bad of [
    '',
    'not base64!',
    encodeCursor('vid_short'),
    Buffer.from(id).toString('base64url'),
    'A'.repeat(65),
    Buffer.from(`v2:${id}`).toString('base64url'),
  ]) {
    t.equal(decodeCursor(bad), undefined, JSON.stringify(bad.slice(0, 20)));
  }
});

t.test('lists the caller’s own videos only, newest first, with the same Video shape as GET', async (t) => {
  const gw = await startTestGateway(t);
  const aliceIds = await createMany(gw, 3);
  gw.clock.advance(1);
  await createVideo(gw, { prompt: 'Bob’s video' }, 'bob');

  const { response, page } = await list(gw);
  t.equal(response.statusCode, 200);
  t.equal(response.headers['content-type'], 'application/json; charset=utf-8');
  t.equal(response.headers['cache-control'], 'private, no-cache');
  t.same(
    page.data.map((video) => video.id),
    [...aliceIds].reverse(),
  );
  t.equal(page.nextCursor, null, 'one page');
  const single = await gw.app.inject({ method: 'GET', url: `/videos/${aliceIds[0]}`, headers: auth() });
  t.same(page.data.at(-1), single.json(), 'same rendering as GET /videos/{id}');
  t.notMatch(response.body, /[0-9a-f]{8}-[0-9a-f]{4}-/, 'no upstream id');

  const bob = await list(gw, '', 'bob');
  t.equal(bob.page.data.length, 1);
  t.equal(bob.page.data[0]?.prompt, 'Bob’s video');

  const none = await startTestGateway(t);
  t.same((await list(none)).page, { data: [], nextCursor: null });
});

t.test('pages with an opaque cursor stay stable while new videos are created', async (t) => {
  const gw = await startTestGateway(t);
  const ids = (await createMany(gw, 7)).reverse(); // newest first
  const first = await list(gw, '?limit=3');
  t.same(
    first.page.data.map((video) => video.id),
    ids.slice(0, 3),
  );
  t.type(first.page.nextCursor, 'string');

  // New videos arrive between page requests: they sort above the cursor and never shift the pages below it.
  await createMany(gw, 2, 'Newer');
  const second = await list(gw, `?limit=3&cursor=${first.page.nextCursor}`);
  t.same(
    second.page.data.map((video) => video.id),
    ids.slice(3, 6),
  );
  const third = await list(gw, `?limit=3&cursor=${second.page.nextCursor}`);
  t.same(
    third.page.data.map((video) => video.id),
    ids.slice(6),
  );
  t.equal(third.page.nextCursor, null, 'last page');

  const exact = await list(gw, '?limit=9');
  t.equal(exact.page.data.length, 9);
  t.equal(exact.page.nextCursor, null, 'no empty trailing page when the count divides evenly');
});

t.test('the status filter, and a cursor from another client reveals nothing', async (t) => {
  const gw = await startTestGateway(t);
  const [done] = await createMany(gw, 1);
  await advanceAndPoll(gw, 15_000);
  const running = await createMany(gw, 2);

  const completed = await list(gw, '?status=completed');
  t.same(
    completed.page.data.map((video) => video.id),
    [done],
  );
  t.equal(completed.page.data[0]?.status, 'completed');
  const queued = await list(gw, '?status=queued');
  t.same(
    queued.page.data.map((video) => video.id),
    [...running].reverse(),
  );
  t.same((await list(gw, '?status=failed')).page.data, []);

  const cursor = encodeCursor(running[1] ?? '');
  t.same((await list(gw, `?cursor=${cursor}`, 'bob')).page.data, [], 'bob sees none of alice’s videos whatever the cursor');
});

t.test('bad limit, status or cursor → 400 validation_failed naming the parameter', async (t) => {
  const gw = await startTestGateway(t);
  const cases: Array<[string, string]> = [
    ['?limit=0', '/querystring/limit'],
    ['?limit=101', '/querystring/limit'],
    ['?limit=ten', '/querystring/limit'],
    ['?limit=2.5', '/querystring/limit'],
    ['?status=done', '/querystring/status'],
    ['?cursor=not%20base64', '/querystring/cursor'],
    [`?cursor=${'A'.repeat(65)}`, '/querystring/cursor'],
    [`?cursor=${Buffer.from('v1:vid_nope').toString('base64url')}`, '/querystring/cursor'],
  ];
  for (const [query, path] of cases) {
    const { response } = await list(gw, query);
    t.equal(response.statusCode, 400, query);
    t.equal(response.json().code, 'validation_failed', query);
    t.equal(response.json().errors[0].path, path, query);
  }
  const max = await list(gw, '?limit=100');
  t.equal(max.response.statusCode, 200);
});

t.test('listing never calls the upstream', async (t) => {
  const gw = await startTestGateway(t);
  await createMany(gw, 3);
  const before = gw.sandbox.stats.requests;
  for (let i = 0; i < 10; i++) await list(gw);
  t.equal(gw.sandbox.stats.requests, before);
});
