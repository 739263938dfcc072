import { randomBytes } from 'node:crypto';

import pg from 'pg';
import t, { type Test } from 'tap';

import { openPostgresStore } from '../src/store/postgres.js';
import type { VideoRecord } from '../src/store/records.js';
import { auth, createVideo, startTestGateway } from './helpers/gateway.js';
import { freshSchema, postgresOrSkip } from './helpers/postgres.js';
import { videoRequest } from './helpers/records.js';
import { newVideo, T0 } from './helpers/store-contract.js';
import { until } from './helpers/until.js';

const server = await postgresOrSkip(t);

/** A LISTEN connection of its own on both channels; `changes` are the `gateway_video_changed` payloads, in order. */
async function listen(t: Test, url: string): Promise<{ changes: string[]; due: () => number }> {
  const changes: string[] = [];
  let due = 0;
  const listener = new pg.Client({ connectionString: url });
  await listener.connect();
  t.teardown(() => listener.end());
  listener.on('notification', (message) => {
    if (message.channel === 'gateway_deliveries_due') due += 1;
    else if (message.channel === 'gateway_video_changed' && message.payload !== undefined) changes.push(message.payload);
  });
  await listener.query('listen gateway_video_changed');
  await listener.query('listen gateway_deliveries_due');
  return { changes, due: () => due };
}

if (server !== null) {
  t.test('DELETE /videos/{id} on Postgres sends NOTIFY {id, version} of the erasure, so other replicas learn of it', async (t) => {
    const { url } = await freshSchema(t, server);
    const gw = await startTestGateway(t, { gateway: { store: await openPostgresStore({ url, poolSize: 2 }) } });
    const feed = await listen(t, url);

    const video = await createVideo(gw, { prompt: 'Announce my deletion' });
    const created = await gw.store.videos.get(video.id);
    if (created === undefined) throw new Error('not stored');
    await until(() => feed.changes.includes(JSON.stringify({ id: video.id, version: created.version })), 'the NOTIFY of the create');

    const response = await gw.app.inject({ method: 'DELETE', url: `/videos/${video.id}`, headers: auth('alice') });
    t.equal(response.statusCode, 204, response.body);
    const tombstone = await gw.store.videos.tombstone(video.id);
    if (tombstone === undefined) throw new Error('no tombstone');
    t.equal(tombstone.version, created.version + 1, 'the erasure is the version after the last one');
    const payload = JSON.stringify({ id: video.id, version: tombstone.version });
    await until(() => feed.changes.includes(payload), 'the NOTIFY of the DELETE');
    t.same(JSON.parse(payload), { id: video.id, version: created.version + 1 }, 'id and version only, no content');
  });

  t.test('retention and the submission lifecycle announce every video they write or erase', async (t) => {
    const { url } = await freshSchema(t, server);
    const store = await openPostgresStore({ url, poolSize: 2 });
    t.teardown(() => store.close());
    const feed = await listen(t, url);
    const expect = async (id: string, version: number, what: string): Promise<void> => {
      await until(() => feed.changes.includes(JSON.stringify({ id, version })), `the NOTIFY of ${what}`);
      t.pass(`${what}: ${id} v${version}`);
    };

    const submission = newVideo({ id: 'vid_NSUBMIT01' });
    t.equal(await store.videos.recordSubmission(submission), true);
    await expect(submission.id, 1, 'recordSubmission');
    const accepted = await store.videos.acceptSubmission(submission.id, {
      upstreamId: 'up_NSUBMIT01',
      status: 'queued',
      upstreamState: 'queued',
      estimatedWaitSeconds: null,
      nextPollAt: T0 + 2_000,
      now: T0 + 1,
    });
    if (accepted === undefined) throw new Error('not accepted');
    await expect(accepted.id, accepted.version, 'acceptSubmission');

    const failing = newVideo({ id: 'vid_NSUBMIT02' });
    await store.videos.recordSubmission(failing);
    const failed = await store.videos.failSubmission(failing.id, T0 + 2, { code: 'submit_interrupted', message: 'x' }, []);
    if (failed === undefined) throw new Error('not failed');
    await expect(failed.id, failed.version, 'failSubmission');

    const discarded = newVideo({ id: 'vid_NSUBMIT03' });
    await store.videos.recordSubmission(discarded);
    await store.videos.discardSubmission(discarded.id);
    await expect(discarded.id, 2, 'discardSubmission (the version after the last one)');

    const erased = await store.videos.eraseTerminalBefore(T0 + 10, 10, T0 + 20);
    t.same(
      erased.map((tombstone) => tombstone.id),
      [failed.id],
      'retention erased the terminal video',
    );
    await expect(failed.id, failed.version + 1, 'eraseTerminalBefore');
    for (const payload of feed.changes) t.match(payload, /^\{"id":"vid_[0-9A-Z]+","version":\d+\}$/, 'the payload carries no content');
  });

  t.test('every committed change of a video sends NOTIFY {id, version}; new outbox rows wake dispatchers', async (t) => {
    const { url } = await freshSchema(t, server);
    const store = await openPostgresStore({ url, poolSize: 2 });
    t.teardown(() => store.close());

    // Channels are database-wide: other tests' notifications are told apart by this test's own ids.
    const prefix = `vid_N${randomBytes(5).toString('hex').toUpperCase()}`;
    const changes: string[] = [];
    let due = 0;
    const listener = new pg.Client({ connectionString: url });
    await listener.connect();
    t.teardown(() => listener.end());
    listener.on('notification', (message) => {
      if (message.channel === 'gateway_deliveries_due') due += 1;
      else if (message.channel === 'gateway_video_changed' && message.payload?.includes(prefix) === true) changes.push(message.payload);
    });
    await listener.query('listen gateway_video_changed');
    await listener.query('listen gateway_deliveries_due');

    const expectChange = async (record: VideoRecord | undefined, what: string): Promise<void> => {
      if (record === undefined) throw new Error(`${what}: no record`);
      const payload = JSON.stringify({ id: record.id, version: record.version });
      await until(() => changes.includes(payload), `the NOTIFY of ${what}`);
      t.pass(`${what}: ${payload}`);
    };

    const video = await store.videos.insert(
      newVideo({ id: `${prefix}01`, request: videoRequest({ callbackUrl: 'https://hooks.example/h' }), nextPollAt: T0 }),
    );
    await expectChange(video, 'insert');

    const [claimed] = await store.videos.claimDue(T0, 1, 30_000);
    t.equal(claimed?.id, video.id);
    await store.videos.reschedulePoll(video.id, T0 + 1, {
      nextPollAt: T0 + 2_000,
      pollAttempts: 1,
      notFoundSince: null,
      estimatedWaitSeconds: 12,
    });
    await expectChange(await store.videos.get(video.id), 'reschedulePoll');

    const dueBefore = due;
    const completed = await store.videos.applyTransition(
      video.id,
      T0 + 3_000,
      { status: 'completed', upstreamState: 'completed', estimatedWaitSeconds: null, result: null, failure: null },
      null,
      [{ messageId: `msg_${prefix}`, eventType: 'video.completed' }],
    );
    await expectChange(completed, 'applyTransition');
    await until(() => due > dueBefore, 'gateway_deliveries_due after a new outbox row');

    const [delivery] = await store.deliveries.claimDue(T0 + 4_000, { limit: 10, leaseMs: 30_000 });
    if (delivery === undefined) throw new Error('not claimed');
    const attempted = await store.deliveries.recordAttempt({
      messageId: delivery.messageId,
      leaseUntil: delivery.leaseUntil,
      attempt: 1,
      at: T0 + 4_000,
      durationMs: 5,
      responseStatus: 204,
      error: null,
      responseExcerpt: null,
      next: { status: 'delivered', nextAttemptAt: null },
      now: T0 + 4_010,
    });
    await expectChange(attempted, 'recordAttempt');

    const redelivered = await store.deliveries.redeliver(video.id, T0 + 5_000);
    if (redelivered.kind !== 'enqueued') throw new Error(redelivered.kind);
    await expectChange(redelivered.video, 'redeliver');

    await expectChange(await store.videos.refreshResult(video.id, T0 + 6_000, sampleResult()), 'refreshResult');

    // Nothing changes (terminal states never change): nothing is announced.
    const count = changes.length;
    t.equal(
      await store.videos.applyTransition(
        video.id,
        T0 + 7_000,
        {
          status: 'failed',
          upstreamState: 'failed',
          estimatedWaitSeconds: null,
          result: null,
          failure: { code: 'upstream_failed', message: 'x' },
        },
        null,
        [],
      ),
      undefined,
    );
    // A later change proves the listener is caught up; the unchanged video sent nothing in between.
    const other = await store.videos.insert(newVideo({ id: `${prefix}02` }));
    await expectChange(other, 'a second insert');
    t.equal(changes.length, count + 1, 'a write that changed nothing sent nothing');
    for (const payload of changes) t.match(payload, /^\{"id":"vid_[0-9A-Z]+","version":\d+\}$/, 'the payload carries no content');
  });
}

function sampleResult() {
  return {
    video: {
      url: 'https://cdn.example/v.mp4',
      downloadUrl: 'https://cdn.example/v.mp4?sig=2',
      downloadUrlExpiresAt: '2026-01-01T02:00:00.000Z',
      width: 1,
      height: 1,
      durationSeconds: 1,
    },
    rawVideo: null,
    thumbnail: null,
    lastFrame: null,
  };
}
