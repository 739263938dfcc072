import t from 'tap';

import { createPostgresKysely, openPostgresStore } from '../src/store/postgres.js';
import type { VideoTransition } from '../src/store/records.js';
import { freshSchema, postgresOrSkip } from './helpers/postgres.js';
import { videoRequest } from './helpers/records.js';
import { assertDisjointCover, newVideo, seedDue, storeContract, T0 } from './helpers/store-contract.js';

const completedTransition: VideoTransition = {
  status: 'completed',
  upstreamState: 'completed',
  estimatedWaitSeconds: null,
  result: null,
  failure: null,
};

const server = await postgresOrSkip(t);
if (server !== null) {
  /** Every repository behaves as the contract says, in a fresh schema per test. */
  storeContract('Postgres', async (t) => {
    const { url } = await freshSchema(t, server);
    const inspect = createPostgresKysely({ url, poolSize: 2 });
    t.teardown(() => inspect.destroy());
    return {
      inspect,
      async open() {
        const store = await openPostgresStore({ url, poolSize: 4 });
        t.teardown(() => store.close());
        return store;
      },
    };
  });
}

if (server !== null) {
  t.test('two stores (two pools, as two replicas) claiming at once: no row twice, the caps hold', async (t) => {
    const { url } = await freshSchema(t, server);
    const a = await openPostgresStore({ url, poolSize: 4 });
    const b = await openPostgresStore({ url, poolSize: 4 });
    t.teardown(() => Promise.all([a.close(), b.close()]));

    const videos = await seedDue(a, 120);
    const videoBatches = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).videos.claimDue(T0 + 1_000, 4, 30_000)),
    );
    assertDisjointCover(
      t,
      videoBatches.map((batch) => batch.map((video) => video.id)),
      videos,
    );

    const hosts = ['one.example', 'two.example', 'three.example'];
    for (let i = 0; i < 60; i++) {
      const video = await a.videos.insert(
        newVideo({ request: videoRequest({ callbackUrl: `https://${hosts[i % hosts.length] ?? ''}/h` }), nextPollAt: null }),
      );
      await a.videos.applyTransition(video.id, T0, { ...completedTransition }, null, [
        { messageId: `msg_cap_${i}`, eventType: 'video.completed' },
      ]);
    }
    const caps = { leaseMs: 30_000, maxInFlight: 8, maxInFlightPerHost: 3, perHostLimit: 3 };
    const claims = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).deliveries.claimDue(T0 + 1_000, { limit: 8, ...caps })),
    );
    const claimed = claims.flat();
    t.equal(new Set(claimed.map((delivery) => delivery.messageId)).size, claimed.length, 'no delivery claimed twice');
    t.equal(claimed.length, 8, 'the global cap holds across both stores');
    for (const host of hosts) {
      t.ok(claimed.filter((delivery) => delivery.targetHost === host).length <= 3, `at most 3 in flight toward ${host}`);
    }
  });
}
