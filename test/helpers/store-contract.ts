import type { Kysely } from 'kysely';
import t, { type Test } from 'tap';

import type { VideoResult } from '../../schemas/video.js';
import { initialRecord, type NewVideo, type VideoRecord, type VideoTransition } from '../../src/store/records.js';
import type { Store } from '../../src/store/repositories.js';
import type { Database, WebhookDeliveryRow } from '../../src/store/tables.js';
import { videoRequest } from './records.js';

/*
 * The store contract: what every dialect's `Store` does, written against the repository interfaces only. A dialect's
 * test file calls `storeContract` with a factory of fresh databases and adds what is its own (files, processes).
 * Every time is an explicit epoch-ms value: nothing here waits on the real clock.
 */

/** A fresh, empty database of one dialect, for one test. */
export interface ContractDatabase {
  /** Opens a store on it; every call is another connection (a second process, a restart). Closed at teardown. */
  open(): Promise<Store>;
  /** A separate connection for raw rows, as an operator sees them. */
  inspect: Kysely<Database>;
}

export type OpenContractDatabase = (t: Test) => Promise<ContractDatabase>;

export const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const LEASE_MS = 30_000;
const DAY_MS = 86_400_000;
/** Duplicate keys, as SQLite (`UNIQUE constraint failed`, `PRIMARY KEY`) and Postgres (`duplicate key value`) word it. */
const duplicateKey = /unique|primary|duplicate/i;

let sequence = 0;
export function newVideo(overrides: Partial<NewVideo> = {}): NewVideo {
  sequence += 1;
  const n = String(sequence).padStart(6, '0');
  return {
    id: `vid_01JDXYZ8M6X1ZP3V9R4Q${n}`,
    clientId: 'client_a',
    endUserId: null,
    upstreamId: `up-${n}`,
    status: 'queued',
    upstreamState: 'pending',
    request: videoRequest({ prompt: 'A serene lake at sunset', callbackUrl: 'https://example.com/hooks' }),
    estimatedWaitSeconds: null,
    result: null,
    failure: null,
    createdAt: T0,
    nextPollAt: T0 + 2_000,
    ...overrides,
  };
}

const sampleResult = (expiresAt = '2026-01-01T01:00:00.000Z'): VideoResult => ({
  video: {
    url: 'https://cdn.example/v.mp4',
    downloadUrl: `https://cdn.example/v.mp4?sig=${expiresAt}`,
    downloadUrlExpiresAt: expiresAt,
    width: 1360,
    height: 752,
    durationSeconds: 5.041667,
  },
  rawVideo: { url: 'https://cdn.example/raw.mp4', width: 1360, height: 752, durationSeconds: null },
  thumbnail: { url: 'https://cdn.example/t.jpg', width: null, height: null },
  lastFrame: null,
});

const processing: VideoTransition = {
  status: 'processing',
  upstreamState: 'dreaming',
  estimatedWaitSeconds: 30,
  result: null,
  failure: null,
};
const completed = (result = sampleResult()): VideoTransition => ({
  status: 'completed',
  upstreamState: 'completed',
  estimatedWaitSeconds: null,
  result,
  failure: null,
});
const failed: VideoTransition = {
  status: 'failed',
  upstreamState: 'failed',
  estimatedWaitSeconds: null,
  result: null,
  failure: { code: 'upstream_failed', message: 'moderation' },
};

const outboxRows = (inspect: Kysely<Database>, videoId: string): Promise<WebhookDeliveryRow[]> =>
  inspect.selectFrom('webhook_deliveries').selectAll().where('video_id', '=', videoId).orderBy('message_id').execute();

export async function seedDue(store: Store, count: number): Promise<Set<string>> {
  const ids = new Set<string>();
  for (let i = 0; i < count; i++) ids.add((await store.videos.insert(newVideo({ nextPollAt: T0 + i }))).id);
  return ids;
}

export function assertDisjointCover(t: Test, batches: string[][], expected: Set<string>): void {
  const all = batches.flat();
  t.equal(new Set(all).size, all.length, 'no row was claimed twice');
  t.same(new Set(all), expected, 'every due row was claimed once');
}

/** A terminal video with one outbox row of its terminal event, due at `at`. */
async function terminalWithEvent(store: Store, at: number, overrides: Partial<NewVideo> = {}, messageId = `msg_${++sequence}`) {
  const video = await store.videos.insert(newVideo(overrides));
  const done = await store.videos.applyTransition(video.id, at, completed(), null, [{ messageId, eventType: 'video.completed' }]);
  if (done === undefined) throw new Error('transition not applied');
  return { video: done, messageId };
}

export function storeContract(dialect: string, openDatabase: OpenContractDatabase): void {
  const opened = async (t: Test): Promise<{ store: Store; db: ContractDatabase }> => {
    const db = await openDatabase(t);
    return { store: await db.open(), db };
  };

  t.test(`${dialect} store contract`, async (t) => {
    t.test('videos: insert / get round-trip every field', async (t) => {
      const { store } = await opened(t);
      const input = newVideo({
        status: 'processing',
        upstreamState: 'dreaming',
        request: {
          prompt: 'Ünïcode prompt — "quoted" \'single\'',
          aspectRatio: '9:16',
          loop: true,
          model: 'ray-2',
          resolution: '1080p',
          duration: '9s',
          keyframes: { start: { imageUrl: 'https://img.example/a.png' }, end: { videoId: 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC' } },
          callbackUrl: 'https://example.com/hooks?x=1',
          webhookEvents: ['video.processing', 'video.completed', 'video.failed'],
          metadata: { userId: 'u_42', empty: '' },
        },
        estimatedWaitSeconds: 12.5,
        result: sampleResult(),
        failure: { code: 'timed_out', message: 'too slow' },
        createdAt: T0 + 123,
        nextPollAt: T0 + 4_567,
      });
      const expected: VideoRecord = {
        ...input,
        updatedAt: T0 + 123,
        completedAt: null,
        pollAttempts: 0,
        notFoundSince: null,
        leaseUntil: null,
        version: 1,
      };

      t.same(await store.videos.insert(input), expected, 'insert returns the stored record');
      t.same(initialRecord(input), expected, 'which is initialRecord(input): a create can render it before the insert');
      t.same(await store.videos.get(input.id), expected, 'get returns it unchanged');
      t.equal(await store.videos.get('vid_unknown'), undefined);

      const minimal = newVideo({ upstreamState: null });
      t.same(await store.videos.get((await store.videos.insert(minimal)).id), initialRecord(minimal));

      await t.rejects(store.videos.insert(newVideo({ upstreamId: input.upstreamId })), duplicateKey, 'upstream ids are unique');
      await t.rejects(store.videos.insert({ ...newVideo(), id: input.id }), duplicateKey, 'video ids are unique');
    });

    t.test('videos: list is newest first per client, by status, keyset-paged', async (t) => {
      const { store } = await opened(t);
      const a1 = await store.videos.insert(newVideo());
      const a2 = await store.videos.insert(newVideo({ status: 'completed', result: sampleResult() }));
      const a3 = await store.videos.insert(newVideo());
      await store.videos.insert(newVideo({ clientId: 'client_b' }));
      const ids = (records: VideoRecord[]) => records.map((video) => video.id);
      t.same(ids(await store.videos.list('client_a', { limit: 10 })), [a3.id, a2.id, a1.id]);
      t.same(ids(await store.videos.list('client_a', { limit: 2 })), [a3.id, a2.id]);
      t.same(ids(await store.videos.list('client_a', { limit: 10, beforeId: a2.id })), [a1.id]);
      t.same(ids(await store.videos.list('client_a', { limit: 10, status: 'queued' })), [a3.id, a1.id]);
      t.same(await store.videos.list('client_c', { limit: 10 }), []);
    });

    t.test("videos: an end user's list holds only its own videos of its own client", async (t) => {
      const { store } = await opened(t);
      const u1 = await store.videos.insert(newVideo({ endUserId: 'user_1' }));
      const u2 = await store.videos.insert(newVideo({ endUserId: 'user_2' }));
      const u1b = await store.videos.insert(newVideo({ endUserId: 'user_1', status: 'completed', result: sampleResult() }));
      const none = await store.videos.insert(newVideo());
      await store.videos.insert(newVideo({ clientId: 'client_b', endUserId: 'user_1' }));
      const ids = (records: VideoRecord[]) => records.map((video) => video.id);
      t.equal((await store.videos.get(u1.id))?.endUserId, 'user_1', 'stored and read back');
      t.equal((await store.videos.get(none.id))?.endUserId, null);
      t.same(ids(await store.videos.list('client_a', { limit: 10, endUserId: 'user_1' })), [u1b.id, u1.id]);
      t.same(ids(await store.videos.list('client_a', { limit: 10, endUserId: 'user_1', status: 'queued' })), [u1.id]);
      t.same(ids(await store.videos.list('client_a', { limit: 10, endUserId: 'user_1', beforeId: u1b.id })), [u1.id]);
      t.same(ids(await store.videos.list('client_a', { limit: 10, endUserId: 'user_2' })), [u2.id]);
      t.same(ids(await store.videos.list('client_a', { limit: 10 })), [none.id, u1b.id, u2.id, u1.id], 'the client sees all');
    });

    t.test('videos: claimDue', async (t) => {
      const { store } = await opened(t);
      const queued = await store.videos.insert(newVideo({ nextPollAt: T0 + 1_000 }));
      const running = await store.videos.insert(newVideo({ status: 'processing', nextPollAt: T0 + 2_000 }));
      const later = await store.videos.insert(newVideo({ nextPollAt: T0 + 60_000 }));
      // Terminal rows are never claimed, whatever their next_poll_at says.
      await store.videos.insert(newVideo({ status: 'completed', result: sampleResult(), nextPollAt: T0 }));
      await store.videos.insert(newVideo({ status: 'failed', nextPollAt: T0 }));
      await store.videos.insert(newVideo({ nextPollAt: null }));

      const now = T0 + 5_000;
      const claimed = await store.videos.claimDue(now, 10, LEASE_MS);
      t.same(
        claimed.map((video) => video.id),
        [queued.id, running.id],
        'due running rows only, most overdue first',
      );
      t.ok(
        claimed.every((video) => video.leaseUntil === now + LEASE_MS),
        'leased until now + leaseMs',
      );
      t.equal((await store.videos.get(queued.id))?.leaseUntil, now + LEASE_MS, 'the lease is stored');

      t.same(await store.videos.claimDue(now, 10, LEASE_MS), [], 'a leased row is not claimed again');
      t.same(await store.videos.claimDue(now + LEASE_MS - 1, 10, LEASE_MS), [], 'not before the lease expires');
      const reclaimed = await store.videos.claimDue(now + LEASE_MS, 10, LEASE_MS);
      t.same(
        reclaimed.map((video) => video.id),
        [queued.id, running.id],
        'an expired lease is claimed again',
      );
      t.equal(reclaimed[0]?.leaseUntil, now + 2 * LEASE_MS);

      const atLater = await store.videos.claimDue(T0 + 60_000, 10, LEASE_MS);
      t.same(
        atLater.map((video) => video.id),
        [later.id],
        'a row becomes due at next_poll_at',
      );

      t.same(await store.videos.claimDue(T0 + 10 * 60_000, 0, LEASE_MS), [], 'limit 0 claims nothing');
    });

    t.test('videos: claimDue honours the limit, oldest first', async (t) => {
      const { store } = await opened(t);
      for (const offset of [500, 100, 400, 200, 300]) await store.videos.insert(newVideo({ nextPollAt: T0 + offset }));
      const firstTwo = await store.videos.claimDue(T0 + 1_000, 2, LEASE_MS);
      t.same(
        firstTwo.map((video) => video.nextPollAt),
        [T0 + 100, T0 + 200],
      );
      const rest = await store.videos.claimDue(T0 + 1_000, 10, LEASE_MS);
      t.same(
        rest.map((video) => video.nextPollAt),
        [T0 + 300, T0 + 400, T0 + 500],
      );
    });

    t.test('videos: concurrent claims never return the same row', async (t) => {
      t.test('one store, many concurrent callers', async (t) => {
        const { store } = await opened(t);
        const ids = await seedDue(store, 40);
        const batches = await Promise.all(Array.from({ length: 20 }, () => store.videos.claimDue(T0 + 1_000, 3, LEASE_MS)));
        assertDisjointCover(
          t,
          batches.map((batch) => batch.map((video) => video.id)),
          ids,
        );
      });

      t.test('two stores (two connections) on one database', async (t) => {
        const { store: a, db } = await opened(t);
        const b = await db.open();
        const ids = await seedDue(a, 40);
        const batches = await Promise.all(
          Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).videos.claimDue(T0 + 1_000, 3, LEASE_MS)),
        );
        assertDisjointCover(
          t,
          batches.map((batch) => batch.map((video) => video.id)),
          ids,
        );
      });
    });

    t.test('videos: applyTransition', async (t) => {
      const { store, db } = await opened(t);
      const video = await store.videos.insert(newVideo({ estimatedWaitSeconds: 60 }));
      await store.videos.claimDue(T0 + 2_000, 1, LEASE_MS);

      const now1 = T0 + 3_000;
      const toProcessing = await store.videos.applyTransition(video.id, now1, processing, now1 + 2_000, [
        { messageId: 'msg_A1', eventType: 'video.processing' },
      ]);
      t.same(toProcessing, {
        ...video,
        status: 'processing',
        upstreamState: 'dreaming',
        estimatedWaitSeconds: 30,
        updatedAt: now1,
        completedAt: null,
        nextPollAt: now1 + 2_000,
        pollAttempts: 1,
        notFoundSince: null,
        leaseUntil: null,
        // The new event's delivery state, on the video in the same transaction: raw, epoch ms.
        webhook: { status: 'pending', attempts: 0, lastAttemptAt: null, nextAttemptAt: now1, lastResponseStatus: null },
        version: toProcessing?.version ?? Number.NaN,
      });
      t.ok((toProcessing?.version ?? 0) > video.version, 'a change bumps the version');
      t.same(await store.videos.get(video.id), toProcessing, 'stored as returned');
      t.same(await outboxRows(db.inspect, video.id), [
        {
          message_id: 'msg_A1',
          video_id: video.id,
          client_id: 'client_a',
          event_type: 'video.processing',
          status: 'pending',
          attempts: 0,
          next_attempt_at: now1,
          lease_until: null,
          last_attempt_at: null,
          last_response_status: null,
          last_error: null,
          created_at: now1,
          updated_at: now1,
          payload: null,
          target_url: 'https://example.com/hooks',
          target_host: 'example.com',
          series_start_attempts: 0,
        },
      ]);

      const now2 = T0 + 9_000;
      const result = sampleResult();
      // A terminal transition never keeps a next poll, whatever the caller passes.
      const done = await store.videos.applyTransition(video.id, now2, completed(result), now2 + 1, [
        { messageId: 'msg_A2', eventType: 'video.completed' },
      ]);
      t.match(done, {
        status: 'completed',
        result,
        failure: null,
        completedAt: now2,
        updatedAt: now2,
        nextPollAt: null,
        pollAttempts: 2,
        leaseUntil: null,
      });
      t.same(
        done?.webhook,
        { status: 'pending', attempts: 0, lastAttemptAt: null, nextAttemptAt: now2, lastResponseStatus: null },
        'the latest event wins',
      );
      t.same(
        (await outboxRows(db.inspect, video.id)).map((row) => row.message_id),
        ['msg_A1', 'msg_A2'],
      );

      // Terminal states never change: a late answer is ignored and writes no event.
      t.equal(
        await store.videos.applyTransition(video.id, T0 + 20_000, failed, null, [{ messageId: 'msg_A3', eventType: 'video.failed' }]),
        undefined,
      );
      t.equal(await store.videos.applyTransition(video.id, T0 + 20_000, processing, T0 + 30_000, []), undefined);
      t.same(await store.videos.get(video.id), done, 'the completed video is untouched');
      t.same(
        (await outboxRows(db.inspect, video.id)).map((row) => row.message_id),
        ['msg_A1', 'msg_A2'],
        'no event for the ignored answers',
      );

      t.equal(
        await store.videos.applyTransition('vid_missing', now2, failed, null, [{ messageId: 'msg_X', eventType: 'video.failed' }]),
        undefined,
      );
      t.same(await db.inspect.selectFrom('webhook_deliveries').select('message_id').where('message_id', '=', 'msg_X').execute(), []);

      const other = await store.videos.insert(newVideo());
      const lost = await store.videos.applyTransition(other.id, now2, failed, null, []);
      t.match(lost, { status: 'failed', failure: failed.failure, result: null, completedAt: now2, nextPollAt: null });
      t.notOk(lost && 'webhook' in lost, 'no events requested, no webhook state');
      t.same(await outboxRows(db.inspect, other.id), [], 'and no outbox row');

      const running = await store.videos.insert(newVideo());
      await t.rejects(store.videos.applyTransition(running.id, now2, processing, null, []), TypeError, 'a running video needs a next poll');
      t.same(await store.videos.get(running.id), running);
    });

    t.test('videos: applyTransition compares and sets on the expected status', async (t) => {
      const { store } = await opened(t);
      const video = await store.videos.insert(newVideo());
      t.equal(
        await store.videos.applyTransition(video.id, T0 + 1_000, processing, T0 + 2_000, [], 'processing'),
        undefined,
        'another status: no change',
      );
      t.match(await store.videos.applyTransition(video.id, T0 + 1_000, processing, T0 + 2_000, [], 'queued'), { status: 'processing' });
      t.equal(
        await store.videos.applyTransition(video.id, T0 + 1_000, processing, T0 + 2_000, [], 'queued'),
        undefined,
        'the racing poller loses',
      );
    });

    t.test('videos: applyTransition is atomic with its outbox rows', async (t) => {
      const { store, db } = await opened(t);
      const first = await store.videos.insert(newVideo());
      await store.videos.applyTransition(first.id, T0 + 3_000, processing, T0 + 5_000, [
        { messageId: 'msg_DUP', eventType: 'video.processing' },
      ]);

      const second = await store.videos.insert(newVideo());
      await store.videos.claimDue(T0 + 2_000, 10, LEASE_MS);
      const before = await store.videos.get(second.id);
      await t.rejects(
        store.videos.applyTransition(second.id, T0 + 4_000, completed(), null, [{ messageId: 'msg_DUP', eventType: 'video.completed' }]),
        duplicateKey,
        'the outbox insert fails on a duplicate message id',
      );
      t.same(await store.videos.get(second.id), before, 'and the video update was rolled back');
      t.same(await outboxRows(db.inspect, second.id), []);

      await t.rejects(
        store.videos.applyTransition(second.id, T0 + 4_000, completed(), null, [
          { messageId: 'msg_B1', eventType: 'video.completed' },
          { messageId: 'msg_B1', eventType: 'video.completed' },
        ]),
        duplicateKey,
      );
      t.same(await store.videos.get(second.id), before, 'a half-written outbox rolls back too');
      t.same(await outboxRows(db.inspect, second.id), []);

      // The store is still usable after a rolled-back transaction.
      const ok = await store.videos.applyTransition(second.id, T0 + 5_000, completed(), null, [
        { messageId: 'msg_B2', eventType: 'video.completed' },
      ]);
      t.equal(ok?.status, 'completed');
      t.same(
        (await outboxRows(db.inspect, second.id)).map((row) => row.message_id),
        ['msg_B2'],
      );
    });

    t.test('videos: insert completing a claimed key stores both in one transaction', async (t) => {
      const { store } = await opened(t);
      const begin = (key: string) =>
        store.idempotencyKeys.begin({
          clientId: 'client_a',
          key,
          fingerprint: 'f',
          now: T0,
          expiresAt: T0 + DAY_MS,
          staleBefore: T0 - 60_000,
        });
      const claimKey = async (key: string) => {
        const begun = await begin(key);
        if (!begun.started) throw new Error('key not claimed');
        return begun.claim;
      };
      const keyState = async (key: string) => {
        const begun = await begin(key);
        return begun.started ? 'free' : begun.existing;
      };
      const answer = (video: NewVideo) => ({
        status: 202,
        body: JSON.stringify({ id: video.id }),
        headers: { location: `/videos/${video.id}` },
      });

      const input = newVideo();
      const stored = await store.videos.insert(input, { claim: await claimKey('k1'), response: answer(input) });
      t.same(await store.videos.get(stored.id), stored);
      t.match(await keyState('k1'), { state: 'completed', response: answer(input) }, 'the key holds the answer');

      // The insert fails (a duplicate id): the key is not completed with an answer naming a video that is not stored.
      const duplicate = { ...newVideo(), id: input.id };
      await t.rejects(store.videos.insert(duplicate, { claim: await claimKey('k2'), response: answer(duplicate) }), duplicateKey);
      t.match(await keyState('k2'), { state: 'in_progress', response: null }, 'the key is untouched');
      t.same(await store.videos.get(input.id), stored, 'and the stored video too');

      // A claim taken over meanwhile (judged orphaned) belongs to the newer request: the video is kept, the key is not touched.
      const lost = { ...(await claimKey('k3')), startedAt: T0 - 1 };
      const kept = newVideo();
      await store.videos.insert(kept, { claim: lost, response: answer(kept) });
      t.ok(await store.videos.get(kept.id));
      t.match(await keyState('k3'), { state: 'in_progress', response: null });
    });

    t.test('videos: erase leaves a tombstone and nothing of the content, in any table', async (t) => {
      const { store, db } = await opened(t);
      const secrets = [
        'A private prompt about a lighthouse',
        'secret-user-42',
        'hooks.private.example',
        'img.private.example',
        'fp-of-the-body',
      ];
      const input = newVideo({
        request: videoRequest({
          prompt: secrets[0],
          metadata: { user: 'secret-user-42' },
          callbackUrl: 'https://hooks.private.example/in',
          keyframes: { start: { imageUrl: 'https://img.private.example/k.jpg' } },
        }),
      });
      const begun = await store.idempotencyKeys.begin({
        clientId: 'client_a',
        key: 'k-erase',
        fingerprint: 'fp-of-the-body',
        now: T0,
        expiresAt: T0 + DAY_MS,
        staleBefore: T0 - 60_000,
      });
      if (!begun.started) throw new Error('key not claimed');
      const answer = {
        status: 202,
        body: JSON.stringify({ id: input.id, prompt: secrets[0] }),
        headers: { location: `/videos/${input.id}` },
      };
      await store.videos.insert(input, { claim: begun.claim, response: answer });
      const done = await store.videos.applyTransition(input.id, T0 + 5_000, completed(), null, [
        { messageId: 'msg_ERASE_1', eventType: 'video.completed' },
      ]);
      if (done === undefined) throw new Error('not completed');
      await store.deliveries.snapshotPayload('msg_ERASE_1', JSON.stringify({ data: { prompt: secrets[0] } }));
      const [claim] = await store.deliveries.claimDue(T0 + 5_000, { limit: 1, leaseMs: LEASE_MS });
      if (claim === undefined) throw new Error('not claimed');
      await store.deliveries.recordAttempt({
        messageId: 'msg_ERASE_1',
        leaseUntil: claim.leaseUntil,
        attempt: 1,
        at: T0 + 5_000,
        durationMs: 3,
        responseStatus: 500,
        error: null,
        responseExcerpt: `echo ${secrets[0]}`,
        next: { status: 'retrying', nextAttemptAt: T0 + 10_000 },
        now: T0 + 5_010,
      });
      const before = await store.videos.get(input.id);
      if (before === undefined) throw new Error('gone');
      const kept = await terminalWithEvent(store, T0 + 6_000, {}, 'msg_KEPT_1');

      t.equal(await store.videos.erase('client_b', input.id, T0 + 20_000), undefined, "another client's video is not erased");
      t.ok(await store.videos.get(input.id), 'and is still there');

      const tombstone = await store.videos.erase('client_a', input.id, T0 + 20_000);
      t.same(tombstone, {
        id: input.id,
        clientId: 'client_a',
        createdAt: T0,
        updatedAt: before.updatedAt,
        completedAt: T0 + 5_000,
        deletedAt: T0 + 20_000,
        version: before.version + 1,
        reason: 'deleted',
      });
      t.equal(await store.videos.get(input.id), undefined, 'the video is gone');
      t.equal(await store.videos.erase('client_a', input.id, T0 + 21_000), undefined, 'a second erase finds nothing');
      t.same(await store.deliveries.listAttempts(input.id, 10), [], 'its attempt log is gone');
      t.same(await store.deliveries.redeliver(input.id, T0 + 22_000), { kind: 'not_found' });
      t.equal(await store.deliveries.snapshotPayload('msg_ERASE_1', '{}'), undefined, 'its outbox row is gone: nothing to send');
      t.same(
        (await store.deliveries.claimDue(T0 + DAY_MS, { limit: 10, leaseMs: LEASE_MS })).map((row) => row.messageId),
        ['msg_KEPT_1'],
        'its pending retry is never claimed; the other video’s event still is',
      );

      const key = await store.idempotencyKeys.begin({
        clientId: 'client_a',
        key: 'k-erase',
        fingerprint: 'fp-of-the-body',
        now: T0 + 30_000,
        expiresAt: T0 + 30_000 + DAY_MS,
        staleBefore: T0 - 60_000,
      });
      t.same(
        key,
        {
          started: false,
          existing: {
            clientId: 'client_a',
            key: 'k-erase',
            fingerprint: '',
            state: 'completed',
            response: null,
            createdAt: T0,
            expiresAt: T0 + DAY_MS,
            erasedAt: T0 + 20_000,
            videoId: input.id,
          },
        },
        'the key keeps its name and expiry, and says its video was erased',
      );

      // As an operator sees the database: no table holds anything of the content.
      for (const table of ['videos', 'webhook_deliveries', 'delivery_attempts', 'idempotency_keys', 'video_tombstones'] as const) {
        const dump = JSON.stringify(await db.inspect.selectFrom(table).selectAll().execute());
        for (const secret of secrets) t.notOk(dump.includes(secret), `${table} holds nothing of "${secret}"`);
        if (table === 'webhook_deliveries' || table === 'delivery_attempts') {
          t.notOk(dump.includes(input.id), `${table} has no row of the erased video`);
        }
      }
      t.same(
        await db.inspect.selectFrom('video_tombstones').selectAll().execute(),
        [
          {
            id: input.id,
            client_id: 'client_a',
            created_at: T0,
            updated_at: before.updatedAt,
            completed_at: T0 + 5_000,
            deleted_at: T0 + 20_000,
            version: before.version + 1,
            reason: 'deleted',
          },
        ],
        'the tombstone: id, owner, times',
      );
      t.same(await store.videos.get(kept.video.id), kept.video, 'the other video is untouched');
    });

    t.test('videos: eraseTerminalBefore takes terminal videos past the age, oldest first, a batch at a time', async (t) => {
      const { store } = await opened(t);
      const finish = async (at: number, transition: VideoTransition = completed()) => {
        const video = await store.videos.insert(newVideo({ createdAt: T0 }));
        await store.videos.applyTransition(video.id, at, transition, null, []);
        return video.id;
      };
      const oldest = await finish(T0 + 1_000);
      const second = await finish(T0 + 2_000, failed);
      const third = await finish(T0 + 3_000);
      const recent = await finish(T0 + 3_001);
      const running = (await store.videos.insert(newVideo({ createdAt: T0 - DAY_MS }))).id;
      const processingId = (await store.videos.insert(newVideo({ createdAt: T0 - DAY_MS }))).id;
      await store.videos.applyTransition(processingId, T0, processing, T0 + 5_000, []);

      t.same(await store.videos.eraseTerminalBefore(T0 + 3_000, 0, T0 + 9_000), [], 'limit 0 erases nothing');
      const batch = await store.videos.eraseTerminalBefore(T0 + 3_000, 2, T0 + 9_000);
      t.same(
        batch.map((tombstone) => [tombstone.id, tombstone.reason, tombstone.deletedAt]).sort(),
        [
          [oldest, 'retention', T0 + 9_000],
          [second, 'retention', T0 + 9_000],
        ].sort(),
        'the two oldest, failed ones included',
      );
      t.same(
        (await store.videos.eraseTerminalBefore(T0 + 3_000, 2, T0 + 9_000)).map((tombstone) => tombstone.id),
        [third],
      );
      t.same(await store.videos.eraseTerminalBefore(T0 + 3_000, 2, T0 + 9_000), [], 'nothing left past the age');
      for (const id of [recent, running, processingId]) t.ok(await store.videos.get(id), `${id} is kept`);
      t.same(await store.videos.eraseTerminalBefore(T0 + DAY_MS, 10, T0 + DAY_MS), [
        {
          id: recent,
          clientId: 'client_a',
          createdAt: T0,
          updatedAt: T0 + 3_001,
          completedAt: T0 + 3_001,
          deletedAt: T0 + DAY_MS,
          version: 3, // inserted 1, completed 2, erased 3
          reason: 'retention',
        },
      ]);
      t.equal(await store.videos.countRunning(), 2, 'running videos are never erased, however old');
    });

    t.test('videos: a submission is recorded before the upstream, then accepted, discarded or failed', async (t) => {
      const { store } = await opened(t);
      const begin = (key: string, now = T0) =>
        store.idempotencyKeys.begin({
          clientId: 'client_a',
          key,
          fingerprint: 'f',
          now,
          expiresAt: now + DAY_MS,
          staleBefore: now - 60_000,
        });
      const claimKey = async (key: string) => {
        const begun = await begin(key);
        if (!begun.started) throw new Error('key not claimed');
        return begun.claim;
      };
      const intent = (id: string) => ({ id, clientId: 'client_a', request: newVideo().request, createdAt: T0 });
      const answer = { status: 202, body: '{"id":"vid_s1"}', headers: { location: '/videos/vid_s1' } };

      // Recorded with its key linked: reads as queued, never polled, not counted as running.
      const claim = await claimKey('s1');
      t.ok(await store.videos.recordSubmission(intent('vid_s1'), claim));
      t.match(await store.videos.get('vid_s1'), { status: 'queued', submitting: true, upstreamId: '', nextPollAt: null });
      t.same(
        (await store.videos.list('client_a', { status: 'queued', limit: 10 })).map((video) => video.id),
        ['vid_s1'],
        'listed as queued',
      );
      t.same(await store.videos.claimDue(T0 + DAY_MS, 10, 1000), [], 'never claimed by the poller');
      t.equal(await store.videos.countRunning(), 0);
      // Even long orphaned, a key linked to a video is never taken over.
      t.match(await begin('s1', T0 + 120_000), { started: false, existing: { state: 'in_progress', videoId: 'vid_s1' } });
      t.notOk(await store.videos.recordSubmission(intent('vid_s1b'), claim), 'one video per claim');
      t.equal(await store.videos.get('vid_s1b'), undefined);

      // Accepted: the upstream id and the key's answer in one transaction.
      const accepted = await store.videos.acceptSubmission(
        'vid_s1',
        { upstreamId: 'up-s1', status: 'queued', upstreamState: 'queued', estimatedWaitSeconds: 30, nextPollAt: T0 + 5000, now: T0 + 10 },
        { claim, response: answer },
      );
      t.match(accepted, { status: 'queued', upstreamId: 'up-s1', nextPollAt: T0 + 5000, updatedAt: T0 + 10, version: 2 });
      t.notOk(accepted?.submitting, 'no longer submitting');
      t.match(await begin('s1'), { started: false, existing: { state: 'completed', response: answer } });
      t.equal(
        await store.videos.acceptSubmission('vid_s1', {
          upstreamId: 'up-x',
          status: 'queued',
          upstreamState: null,
          estimatedWaitSeconds: null,
          nextPollAt: T0,
          now: T0,
        }),
        undefined,
        'accepted once',
      );

      // Refused: the intent is gone and the key released (or given its final answer) together.
      const refusedClaim = await claimKey('s2');
      await store.videos.recordSubmission(intent('vid_s2'), refusedClaim);
      await store.videos.discardSubmission('vid_s2', { claim: refusedClaim, response: null });
      t.equal(await store.videos.get('vid_s2'), undefined);
      t.match(await begin('s2'), { started: true }, 'the key is free again');

      // Interrupted: found stale, failed once with its outbox event, the key answered by video id.
      await store.videos.recordSubmission({ ...intent('vid_s3'), createdAt: T0 - 1 });
      t.same(
        (await store.videos.staleSubmissions(T0 - 1, 10)).map((video) => video.id),
        ['vid_s3'],
      );
      const failure = { code: 'submit_interrupted' as const, message: 'stopped' };
      const failed = await store.videos.failSubmission('vid_s3', T0 + 20, failure, [{ messageId: 'msg_s3', eventType: 'video.failed' }]);
      t.match(failed, { status: 'failed', failure, completedAt: T0 + 20, webhook: { status: 'pending' } });
      t.equal(await store.videos.failSubmission('vid_s3', T0 + 30, failure, []), undefined, 'failed once');
      t.same(await store.videos.staleSubmissions(T0 + DAY_MS, 10), [], 'nothing stale left');
      const linkedClaim = await claimKey('s4');
      await store.videos.recordSubmission(intent('vid_s4'), linkedClaim);
      await store.idempotencyKeys.completeForVideo('vid_s4', answer);
      t.match(await begin('s4'), { started: false, existing: { state: 'completed', response: answer } });
    });

    t.test('store: heartbeat upserts one row', async (t) => {
      const { store } = await opened(t);
      await store.heartbeat(T0);
      await store.heartbeat(T0 + 1);
      t.pass('a second beat updates the row');
    });

    t.test('videos: pollSoon makes a running video due sooner, and nothing else', async (t) => {
      const { store } = await opened(t);
      const video = await store.videos.insert(newVideo({ nextPollAt: T0 + 60_000 }));
      t.equal(await store.videos.pollSoon(video.id, T0 + 1_000), true);
      t.same(
        await store.videos.get(video.id),
        { ...video, nextPollAt: T0 + 1_000 },
        'only the next poll moved (version and updatedAt kept)',
      );
      t.equal(await store.videos.pollSoon(video.id, T0 + 5_000), false, 'never later than already due');
      t.equal((await store.videos.get(video.id))?.nextPollAt, T0 + 1_000);
      t.same(
        (await store.videos.claimDue(T0 + 1_000, 10, LEASE_MS)).map((claimed) => claimed.id),
        [video.id],
        'claimable at once',
      );
      t.equal(await store.videos.pollSoon('vid_unknown', T0), false, 'unknown id');

      const done = await store.videos.insert(newVideo({ nextPollAt: T0 + 60_000 }));
      await store.videos.applyTransition(
        done.id,
        T0 + 2_000,
        {
          status: 'failed',
          upstreamState: 'failed',
          estimatedWaitSeconds: null,
          result: null,
          failure: { code: 'upstream_failed', message: 'x' },
        },
        null,
        [],
      );
      const terminal = await store.videos.get(done.id);
      t.equal(await store.videos.pollSoon(done.id, T0 + 3_000), false, 'terminal videos are left alone');
      t.same(await store.videos.get(done.id), terminal);
    });

    t.test('videos: reschedulePoll', async (t) => {
      const { store } = await opened(t);
      const video = await store.videos.insert(newVideo({ estimatedWaitSeconds: 40 }));
      await store.videos.claimDue(T0 + 2_000, 1, LEASE_MS);

      await store.videos.reschedulePoll(video.id, T0 + 2_500, { nextPollAt: T0 + 5_000, pollAttempts: 1, notFoundSince: T0 + 2_500 });
      const rescheduled = await store.videos.get(video.id);
      t.same(
        rescheduled,
        {
          ...video,
          nextPollAt: T0 + 5_000,
          pollAttempts: 1,
          notFoundSince: T0 + 2_500,
          leaseUntil: null,
          version: rescheduled?.version ?? Number.NaN,
        },
        'lease released, schedule stored, nothing visible changed (updatedAt kept)',
      );

      await store.videos.reschedulePoll(video.id, T0 + 6_000, {
        nextPollAt: T0 + 9_000,
        pollAttempts: 2,
        notFoundSince: null,
        estimatedWaitSeconds: 40,
        upstreamState: 'queued',
      });
      t.match(
        await store.videos.get(video.id),
        { updatedAt: T0, estimatedWaitSeconds: 40, upstreamState: 'queued', notFoundSince: null },
        'same estimate: updatedAt kept',
      );

      await store.videos.reschedulePoll(video.id, T0 + 10_000, {
        nextPollAt: T0 + 14_000,
        pollAttempts: 3,
        notFoundSince: null,
        estimatedWaitSeconds: 25,
      });
      t.match(
        await store.videos.get(video.id),
        { updatedAt: T0 + 10_000, estimatedWaitSeconds: 25, upstreamState: 'queued', pollAttempts: 3 },
        'new estimate: updatedAt moves',
      );

      await store.videos.reschedulePoll(video.id, T0 + 15_000, {
        nextPollAt: T0 + 20_000,
        pollAttempts: 4,
        notFoundSince: null,
        estimatedWaitSeconds: null,
      });
      t.match(
        await store.videos.get(video.id),
        { updatedAt: T0 + 15_000, estimatedWaitSeconds: null },
        'estimate cleared: updatedAt moves',
      );

      await store.videos.reschedulePoll(video.id, T0 + 16_000, {
        nextPollAt: T0 + 21_000,
        pollAttempts: 5,
        notFoundSince: null,
        estimatedWaitSeconds: null,
      });
      t.match(await store.videos.get(video.id), { updatedAt: T0 + 15_000, nextPollAt: T0 + 21_000 }, 'null to null is no change');

      const done = await store.videos.applyTransition(video.id, T0 + 22_000, completed(), null, []);
      await store.videos.reschedulePoll(video.id, T0 + 23_000, {
        nextPollAt: T0 + 30_000,
        pollAttempts: 9,
        notFoundSince: T0,
        estimatedWaitSeconds: 5,
      });
      t.same(await store.videos.get(video.id), done, 'a terminal video is never rescheduled');
    });

    t.test('videos: refreshResult only touches completed videos', async (t) => {
      const { store } = await opened(t);
      const running = await store.videos.insert(newVideo());
      const fresh = sampleResult('2026-01-01T02:00:00.000Z');
      t.equal(await store.videos.refreshResult(running.id, T0 + 1_000, fresh), undefined);
      t.same(await store.videos.get(running.id), running);

      const failedVideo = await store.videos.insert(newVideo());
      const failedRecord = await store.videos.applyTransition(failedVideo.id, T0 + 1_000, failed, null, []);
      t.equal(await store.videos.refreshResult(failedVideo.id, T0 + 2_000, fresh), undefined);
      t.same(await store.videos.get(failedVideo.id), failedRecord);

      const video = await store.videos.insert(newVideo());
      const doneRecord = await store.videos.applyTransition(video.id, T0 + 5_000, completed(), null, []);
      const refreshed = await store.videos.refreshResult(video.id, T0 + 3_500_000, fresh);
      t.same(refreshed, { ...doneRecord, result: fresh, updatedAt: T0 + 3_500_000, version: refreshed?.version ?? Number.NaN });
      t.ok((refreshed?.version ?? 0) > (doneRecord?.version ?? Number.POSITIVE_INFINITY), 'a refresh bumps the version');
      t.same(await store.videos.get(video.id), refreshed);
      t.equal(refreshed?.completedAt, T0 + 5_000, 'completedAt is kept');

      t.equal(await store.videos.refreshResult('vid_missing', T0, fresh), undefined);
    });

    t.test('videos: countRunning, upstreamIdForClient; store: ping, close', async (t) => {
      const { store } = await opened(t);
      t.equal(await store.videos.countRunning(), 0);
      const mine = await store.videos.insert(newVideo({ clientId: 'client_a' }));
      await store.videos.insert(newVideo({ clientId: 'client_b', status: 'processing' }));
      await store.videos.insert(newVideo({ status: 'completed', result: sampleResult() }));
      await store.videos.insert(newVideo({ status: 'failed' }));
      t.equal(await store.videos.countRunning(), 2);

      t.equal(await store.videos.upstreamIdForClient('client_a', mine.id), mine.upstreamId);
      t.equal(await store.videos.upstreamIdForClient('client_b', mine.id), undefined, "another client's video is not found");
      t.equal(await store.videos.upstreamIdForClient('client_a', 'vid_missing'), undefined);

      await store.ping();
      await store.close();
      await store.close();
      t.pass('close is idempotent');
      await t.rejects(store.ping(), 'a closed store does not answer');
    });

    t.test('data survives close and reopen', async (t) => {
      const { store: before, db } = await opened(t);
      const video = await before.videos.insert(newVideo());
      const other = await before.videos.insert(newVideo());
      await before.videos.applyTransition(other.id, T0 + 1_000, completed(), null, [{ messageId: 'msg_S1', eventType: 'video.completed' }]);
      const [claimed] = await before.videos.claimDue(T0 + 2_000, 10, LEASE_MS);
      await before.close();

      const after = await db.open();
      t.same(await after.videos.get(video.id), claimed, 'the in-flight video is still there, lease included');
      t.same(await after.videos.claimDue(T0 + 2_001, 10, LEASE_MS), [], 'its lease still holds after restart');
      const reclaimed = await after.videos.claimDue(T0 + 2_000 + LEASE_MS, 10, LEASE_MS);
      t.same(
        reclaimed.map((row) => row.id),
        [video.id],
        'once the lease expires it is due again',
      );
      t.same(
        (await after.deliveries.claimDue(T0 + 2_000, { limit: 10, leaseMs: LEASE_MS })).map((delivery) => delivery.messageId),
        ['msg_S1'],
        'the outbox survived',
      );
    });

    t.test('deliveries: claimDue leases due rows, most overdue first, and hands each row to one claimer', async (t) => {
      const { store, db } = await opened(t);
      const early = await terminalWithEvent(store, T0 + 1_000, { request: videoRequest({ callbackUrl: 'https://one.example/h' }) });
      const late = await terminalWithEvent(store, T0 + 2_000, { request: videoRequest({ callbackUrl: 'https://two.example:8443/h' }) });
      t.same(await store.deliveries.claimDue(T0 + 500, { limit: 10, leaseMs: LEASE_MS }), [], 'nothing is due before it was written');

      const claimed = await store.deliveries.claimDue(T0 + 5_000, { limit: 10, leaseMs: LEASE_MS });
      t.same(claimed, [
        {
          messageId: early.messageId,
          videoId: early.video.id,
          clientId: 'client_a',
          eventType: 'video.completed',
          targetUrl: 'https://one.example/h',
          targetHost: 'one.example',
          attempts: 0,
          attemptsInSeries: 0,
          payload: null,
          createdAt: T0 + 1_000,
          leaseUntil: T0 + 5_000 + LEASE_MS,
        },
        {
          messageId: late.messageId,
          videoId: late.video.id,
          clientId: 'client_a',
          eventType: 'video.completed',
          targetUrl: 'https://two.example:8443/h',
          targetHost: 'two.example:8443',
          attempts: 0,
          attemptsInSeries: 0,
          payload: null,
          createdAt: T0 + 2_000,
          leaseUntil: T0 + 5_000 + LEASE_MS,
        },
      ]);
      t.same(await store.deliveries.claimDue(T0 + 5_000 + LEASE_MS - 1, { limit: 10, leaseMs: LEASE_MS }), [], 'leases hold');
      t.equal(
        (await store.deliveries.claimDue(T0 + 5_000 + LEASE_MS, { limit: 10, leaseMs: LEASE_MS })).length,
        2,
        'an expired lease is claimed again',
      );
      t.same(await store.deliveries.claimDue(T0 + 10 * LEASE_MS, { limit: 0, leaseMs: LEASE_MS }), [], 'limit 0 claims nothing');

      const other = await db.open();
      const more = await Promise.all(Array.from({ length: 12 }, () => terminalWithEvent(store, T0 + 3_000)));
      const now = T0 + 10 * LEASE_MS;
      const batches = await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? store : other).deliveries.claimDue(now, { limit: 2, leaseMs: LEASE_MS })),
      );
      assertDisjointCover(
        t,
        batches.map((batch) => batch.map((delivery) => delivery.messageId)),
        new Set([early.messageId, late.messageId, ...more.map((event) => event.messageId)]),
      );
    });

    t.test('deliveries: claimDue takes at most perHostLimit per receiver and none of excludeHosts', async (t) => {
      const { store } = await opened(t);
      const to = (host: string) => ({ request: videoRequest({ callbackUrl: `https://${host}/h` }) });
      const busy: string[] = [];
      for (let i = 0; i < 4; i++) busy.push((await terminalWithEvent(store, T0 + i, to('busy.example'))).messageId);
      const calm = await terminalWithEvent(store, T0 + 10, to('calm.example'));
      const skipped = await terminalWithEvent(store, T0 + 11, to('skipped.example'));

      const claimed = await store.deliveries.claimDue(T0 + 1_000, {
        limit: 10,
        leaseMs: LEASE_MS,
        perHostLimit: 2,
        excludeHosts: ['skipped.example'],
      });
      t.same(
        claimed.map((delivery) => delivery.messageId),
        [busy[0], busy[1], calm.messageId],
        'the two oldest of the busy receiver, then the others; the excluded one waits',
      );
      const next = await store.deliveries.claimDue(T0 + 1_000, { limit: 10, leaseMs: LEASE_MS, perHostLimit: 2 });
      t.same(
        next.map((delivery) => delivery.messageId),
        [busy[2], busy[3], skipped.messageId],
      );
    });

    t.test("deliveries: maxInFlight and maxInFlightPerHost count every lease in the store, any claimer's", async (t) => {
      const { store, db } = await opened(t);
      const other = await db.open();
      const to = (host: string) => ({ request: videoRequest({ callbackUrl: `https://${host}/h` }) });
      const slow: string[] = [];
      for (let i = 0; i < 5; i++) slow.push((await terminalWithEvent(store, T0 + i, to('slow.example'))).messageId);
      const fast: string[] = [];
      for (let i = 0; i < 5; i++) fast.push((await terminalWithEvent(store, T0 + 10 + i, to('fast.example'))).messageId);
      const caps = { leaseMs: LEASE_MS, maxInFlight: 6, maxInFlightPerHost: 2 };
      const now = T0 + 1_000;

      const first = await store.deliveries.claimDue(now, { limit: 10, ...caps });
      t.same(
        first.map((delivery) => delivery.messageId),
        [slow[0], slow[1], fast[0], fast[1]],
        'two per receiver',
      );
      t.same(await other.deliveries.claimDue(now, { limit: 10, ...caps }), [], 'another claimer sees both receivers at their cap');
      const [done] = first;
      if (done === undefined) throw new Error('nothing claimed');
      await other.deliveries.release(done.messageId, done.leaseUntil);
      t.same(
        (await other.deliveries.claimDue(now, { limit: 10, ...caps })).map((delivery) => delivery.messageId),
        [slow[0]],
        'a freed slot is taken again, by whichever claimer asks',
      );
      t.same(
        (await other.deliveries.claimDue(now, { limit: 10, leaseMs: LEASE_MS, maxInFlight: 4 })).map((delivery) => delivery.messageId),
        [],
        'the global cap counts every lease: 4 in flight, cap 4',
      );
      t.equal(
        (await other.deliveries.claimDue(now, { limit: 10, leaseMs: LEASE_MS, maxInFlight: 5 })).length,
        1,
        'cap 5 leaves room for one more',
      );
      t.equal(
        (await store.deliveries.claimDue(now + LEASE_MS, { limit: 10, ...caps })).length,
        4,
        'expired leases no longer count: a killed claimer frees its slots when they expire',
      );
    });

    t.test('deliveries: claims interleave clients; perClientLimit and maxInFlightPerClient cap each client', async (t) => {
      const { store } = await opened(t);
      const alice: string[] = [];
      for (let i = 0; i < 5; i++) {
        const to = { clientId: 'alice', request: videoRequest({ callbackUrl: `https://a${i}.example/h` }) };
        alice.push((await terminalWithEvent(store, T0 + i, to)).messageId);
      }
      const bob = (
        await terminalWithEvent(store, T0 + 10, { clientId: 'bob', request: videoRequest({ callbackUrl: 'https://b.example/h' }) })
      ).messageId;
      const now = T0 + 1_000;
      const ids = (claims: Array<{ messageId: string }>) => claims.map((delivery) => delivery.messageId).sort();
      t.same(
        ids(await store.deliveries.claimDue(now, { limit: 2, leaseMs: LEASE_MS })),
        [alice[0], bob].sort(),
        'each client’s oldest first: Bob’s newer event is in a batch of two',
      );
      t.same(
        ids(await store.deliveries.claimDue(now, { limit: 10, leaseMs: LEASE_MS, perClientLimit: 2 })),
        [alice[1], alice[2]].sort(),
        'perClientLimit: two of Alice’s per claim',
      );
      t.same(
        await store.deliveries.claimDue(now, { limit: 10, leaseMs: LEASE_MS, maxInFlightPerClient: 3 }),
        [],
        'maxInFlightPerClient counts the leases: Alice has 3 in flight',
      );
      t.same(
        ids(await store.deliveries.claimDue(now, { limit: 10, leaseMs: LEASE_MS, excludeClients: ['alice'] })),
        [],
        'excludeClients: nothing of Alice’s (Bob has nothing left)',
      );
    });

    t.test('deliveries: the first snapshot of a body wins; recordAttempt applies outcomes under the lease only', async (t) => {
      const { store } = await opened(t);
      const { video, messageId } = await terminalWithEvent(store, T0);
      t.equal(await store.deliveries.snapshotPayload(messageId, '{"first":1}'), '{"first":1}');
      t.equal(await store.deliveries.snapshotPayload(messageId, '{"second":2}'), '{"first":1}', 'retries send the same bytes');

      const [claim] = await store.deliveries.claimDue(T0 + 1_000, { limit: 1, leaseMs: LEASE_MS });
      if (claim === undefined) throw new Error('not claimed');
      t.equal(claim.payload, '{"first":1}');
      const attempt = {
        messageId,
        leaseUntil: claim.leaseUntil,
        attempt: 1,
        at: T0 + 1_000,
        durationMs: 12.4,
        responseStatus: 500,
        error: null,
        responseExcerpt: 'boom',
        next: { status: 'retrying' as const, nextAttemptAt: T0 + 6_000 },
        now: T0 + 1_100,
      };
      const updated = await store.deliveries.recordAttempt(attempt);
      t.same(updated, {
        ...video,
        webhook: { status: 'retrying', attempts: 1, lastAttemptAt: T0 + 1_000, nextAttemptAt: T0 + 6_000, lastResponseStatus: 500 },
        version: updated?.version ?? Number.NaN,
      });
      t.ok((updated?.version ?? 0) > video.version, 'a recorded attempt bumps the version');
      t.same(await store.videos.get(video.id), updated, 'the video carries the delivery state');
      t.same(await store.deliveries.claimDue(T0 + 5_999, { limit: 1, leaseMs: LEASE_MS }), [], 'due again at nextAttemptAt');

      t.equal(
        await store.deliveries.recordAttempt({ ...attempt, attempt: 2, responseStatus: 204 }),
        undefined,
        'a stale lease applies nothing',
      );
      const [retry] = await store.deliveries.claimDue(T0 + 6_000, { limit: 1, leaseMs: LEASE_MS });
      t.match(retry, { messageId, attempts: 1, attemptsInSeries: 1 });
      if (retry === undefined) return;
      const delivered = await store.deliveries.recordAttempt({
        ...attempt,
        leaseUntil: retry.leaseUntil,
        attempt: 2,
        at: T0 + 6_000,
        responseStatus: 204,
        responseExcerpt: null,
        next: { status: 'delivered', nextAttemptAt: null },
        now: T0 + 6_050,
      });
      t.same(delivered?.webhook, {
        status: 'delivered',
        attempts: 2,
        lastAttemptAt: T0 + 6_000,
        nextAttemptAt: null,
        lastResponseStatus: 204,
      });
      t.same(
        await store.deliveries.claimDue(T0 + DAY_MS, { limit: 10, leaseMs: LEASE_MS }),
        [],
        'a delivered event is never claimed again',
      );

      t.same(
        await store.deliveries.listAttempts(video.id, 10),
        [
          { messageId, eventType: 'video.completed', attempt: 2, at: T0 + 6_000, durationMs: 12, responseStatus: 204, error: null },
          { messageId, eventType: 'video.completed', attempt: 2, at: T0 + 1_000, durationMs: 12, responseStatus: 204, error: null },
          { messageId, eventType: 'video.completed', attempt: 1, at: T0 + 1_000, durationMs: 12, responseStatus: 500, error: null },
        ],
        'every attempt is logged, newest first, the fenced-out one included',
      );
      t.equal((await store.deliveries.listAttempts(video.id, 1)).length, 1);
      t.equal(await store.deliveries.recordAttempt({ ...attempt, messageId: 'msg_unknown' }), undefined);
    });

    t.test('deliveries: recordAttempts writes several outcomes in one call, one answer each', async (t) => {
      const { store } = await opened(t);
      const first = await terminalWithEvent(store, T0);
      const second = await terminalWithEvent(store, T0);
      const claims = await store.deliveries.claimDue(T0 + 1_000, { limit: 10, leaseMs: LEASE_MS });
      const leaseOf = (messageId: string): number => claims.find((claim) => claim.messageId === messageId)?.leaseUntil ?? Number.NaN;
      const attempt = (messageId: string, leaseUntil: number) => ({
        messageId,
        leaseUntil,
        attempt: 1,
        at: T0 + 1_000,
        durationMs: 3,
        responseStatus: 204,
        error: null,
        responseExcerpt: null,
        next: { status: 'delivered' as const, nextAttemptAt: null },
        now: T0 + 1_010,
      });
      const written = await store.deliveries.recordAttempts([
        attempt(first.messageId, leaseOf(first.messageId)),
        attempt(second.messageId, leaseOf(second.messageId) + 1),
        attempt('msg_unknown', 0),
      ]);
      t.equal(written.length, 3);
      t.equal(written[0]?.id, first.video.id);
      t.equal(written[0]?.webhook?.status, 'delivered');
      t.equal(written[1], undefined, 'a stale lease applies nothing');
      t.equal(written[2], undefined, 'an unknown delivery writes nothing');
      t.equal((await store.videos.get(second.video.id))?.webhook?.status, 'pending');
      t.equal((await store.deliveries.listAttempts(second.video.id, 10)).length, 1, 'the fenced-out attempt is still logged');
      t.same(await store.deliveries.recordAttempts([]), []);
    });

    t.test('deliveries: release gives a claimed row back at once, only with its lease', async (t) => {
      const { store } = await opened(t);
      const { messageId } = await terminalWithEvent(store, T0);
      const [claim] = await store.deliveries.claimDue(T0, { limit: 1, leaseMs: LEASE_MS });
      if (claim === undefined) throw new Error('not claimed');
      await store.deliveries.release(messageId, claim.leaseUntil + 1);
      t.same(await store.deliveries.claimDue(T0, { limit: 1, leaseMs: LEASE_MS }), [], 'another lease releases nothing');
      await store.deliveries.release(messageId, claim.leaseUntil);
      t.match(
        await store.deliveries.claimDue(T0, { limit: 1, leaseMs: LEASE_MS }),
        [{ messageId, attempts: 0 }],
        'due again, no attempt counted',
      );
    });

    t.test('deliveries: redeliver', async (t) => {
      const { store } = await opened(t);
      t.same(await store.deliveries.redeliver('vid_missing', T0), { kind: 'not_found' });
      const running = await store.videos.insert(newVideo());
      t.same(await store.deliveries.redeliver(running.id, T0), { kind: 'not_terminal' });
      const silent = await store.videos.insert(newVideo());
      await store.videos.applyTransition(silent.id, T0, failed, null, []);
      t.same(await store.deliveries.redeliver(silent.id, T0), { kind: 'no_webhook' });

      const { video, messageId } = await terminalWithEvent(store, T0);
      const [claim] = await store.deliveries.claimDue(T0, { limit: 1, leaseMs: LEASE_MS });
      if (claim === undefined) throw new Error('not claimed');
      await store.deliveries.recordAttempt({
        messageId,
        leaseUntil: claim.leaseUntil,
        attempt: 1,
        at: T0,
        durationMs: 5,
        responseStatus: 410,
        error: 'gone',
        responseExcerpt: null,
        next: { status: 'failed', nextAttemptAt: null },
        now: T0,
      });
      const redelivered = await store.deliveries.redeliver(video.id, T0 + 60_000);
      t.same(redelivered, {
        kind: 'enqueued',
        messageId,
        eventType: 'video.completed',
        video: {
          ...video,
          webhook: { status: 'pending', attempts: 1, lastAttemptAt: T0, nextAttemptAt: T0 + 60_000, lastResponseStatus: 410 },
          version: redelivered.kind === 'enqueued' ? redelivered.video.version : Number.NaN,
        },
      });
      t.ok(redelivered.kind === 'enqueued' && redelivered.video.version > video.version, 'a redelivery bumps the version');
      t.match(
        await store.deliveries.claimDue(T0 + 60_000, { limit: 1, leaseMs: LEASE_MS }),
        [{ messageId, attempts: 1, attemptsInSeries: 0 }],
        'due at once, in a fresh retry series',
      );
    });

    t.test('idempotency keys: begin, complete, abandon, takeover, prune', async (t) => {
      const { store } = await opened(t);
      const keys = store.idempotencyKeys;
      const begin = (key: string, fingerprint: string, now: number) =>
        keys.begin({ clientId: 'client_a', key, fingerprint, now, expiresAt: now + DAY_MS, staleBefore: now - 60_000 });

      const first = await begin('k', 'f1', T0);
      t.same(first, { started: true, claim: { clientId: 'client_a', key: 'k', startedAt: T0 } });
      t.same(await begin('k', 'f2', T0 + 1), {
        started: false,
        existing: {
          clientId: 'client_a',
          key: 'k',
          fingerprint: 'f1',
          state: 'in_progress',
          response: null,
          createdAt: T0,
          expiresAt: T0 + DAY_MS,
          erasedAt: null,
          videoId: null,
        },
      });
      t.match(
        await keys.begin({ clientId: 'client_b', key: 'k', fingerprint: 'f1', now: T0, expiresAt: T0 + DAY_MS, staleBefore: 0 }),
        { started: true },
        'keys are per client',
      );

      const response = { status: 202, body: '{"id":"vid_1"}', headers: { 'content-type': 'application/json', location: '/videos/vid_1' } };
      if (first.started) await keys.complete(first.claim, response);
      t.match(
        await begin('k', 'f1', T0 + 2),
        { started: false, existing: { state: 'completed', response } },
        'the stored answer, byte for byte',
      );
      t.match(await begin('k', 'f1', T0 + DAY_MS), { started: true, claim: { startedAt: T0 + DAY_MS } }, 'an expired key is taken over');

      const orphan = await begin('o', 'f', T0);
      t.match(await begin('o', 'f', T0 + 59_999), { started: false }, 'a running request keeps its key');
      const takeover = await begin('o', 'f', T0 + 60_000);
      t.match(takeover, { started: true, claim: { startedAt: T0 + 60_000 } }, 'an orphaned one is taken over');
      if (orphan.started) {
        await keys.complete(orphan.claim, { status: 500, body: 'stale', headers: {} });
        await keys.abandon(orphan.claim);
      }
      t.match(
        await begin('o', 'f', T0 + 60_001),
        { started: false, existing: { state: 'in_progress', createdAt: T0 + 60_000 } },
        'the old claim can neither complete nor free it',
      );
      if (takeover.started) await keys.abandon(takeover.claim);
      t.match(await begin('o', 'f', T0 + 60_002), { started: true }, 'an abandoned key is free at once');

      t.equal(await keys.prune(T0 + DAY_MS - 1), 0, 'nothing has expired yet');
      t.equal(await keys.prune(T0 + 3 * DAY_MS), 3, 'every expired key is deleted');
      t.match(
        await keys.begin({
          clientId: 'client_b',
          key: 'k',
          fingerprint: 'other',
          now: T0 + 3 * DAY_MS,
          expiresAt: T0 + 4 * DAY_MS,
          staleBefore: 0,
        }),
        { started: true },
      );
    });
  });
}
