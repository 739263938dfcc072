import t from 'tap';

import { openPostgresStore } from '../src/store/postgres.js';
import { auth, startTestGateway } from './helpers/gateway.js';
import { freshSchema, postgresOrSkip } from './helpers/postgres.js';

const server = await postgresOrSkip(t);
if (server !== null) {
  t.test('the same Idempotency-Key sent to two replicas at once makes one upstream create', async (t) => {
    const { url } = await freshSchema(t, server);
    const a = await startTestGateway(t, { gateway: { store: await openPostgresStore({ url, poolSize: 4 }) } });
    const b = await startTestGateway(t, {
      clock: a.clock,
      sandboxInstance: a.sandbox,
      gateway: { store: await openPostgresStore({ url, poolSize: 4 }) },
    });
    const keys = Array.from({ length: 12 }, (_, i) => `replica-key-${i}`);
    const send = (gateway: typeof a, key: string) =>
      gateway.app.inject({
        method: 'POST',
        url: '/videos',
        headers: { ...auth(), 'idempotency-key': key },
        payload: { prompt: `A kite over the dunes ${key}` },
      });
    const answers = await Promise.all(keys.flatMap((key) => [send(a, key), send(b, key)]));

    t.equal(a.sandbox.tasks.size, keys.length, 'one upstream create per key, whichever replica got it');
    for (const [i, key] of keys.entries()) {
      const pair = [answers[2 * i], answers[2 * i + 1]];
      const statuses = pair.map((answer) => answer?.statusCode);
      t.ok(statuses.includes(202), `${key}: one replica created it`);
      // The other replays the stored answer (202, same video) or is told the first is still running (409).
      for (const answer of pair) t.ok([202, 409].includes(answer?.statusCode ?? 0), `${key}: ${answer?.statusCode} ${answer?.body}`);
      const ids = new Set(pair.filter((answer) => answer?.statusCode === 202).map((answer) => answer?.json<{ id: string }>().id));
      t.equal(ids.size, 1, `${key}: one video id`);
    }
    // Once settled, both replicas replay the same answer.
    for (const key of keys.slice(0, 3)) {
      const [fromA, fromB] = await Promise.all([send(a, key), send(b, key)]);
      t.equal(fromA.statusCode, 202);
      t.equal(fromA.body, fromB.body, `${key}: the same stored answer on both replicas`);
    }
    t.equal(a.sandbox.tasks.size, keys.length, 'replays create nothing');
  });
}
