import { randomBytes } from 'node:crypto';

import pg from 'pg';
import t from 'tap';

import { openPostgresStore } from '../src/store/postgres.js';
import type { VideoRecord } from '../src/store/records.js';
import { freshSchema, postgresOrSkip } from './helpers/postgres.js';
import { videoRequest } from './helpers/records.js';
import { newVideo, T0 } from './helpers/store-contract.js';
import { until } from './helpers/until.js';

const server = await postgresOrSkip(t);
if (server !== null) {
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
