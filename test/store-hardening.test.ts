/**
 * The store under trouble (issue 13 items 2, 4, 5), with a real SQLite file: a database another process holds locked,
 * a file deleted or replaced under a running gateway. What a client sees: 503 `store_unavailable` and nothing bought
 * upstream, an honest `/readyz`, and a `/healthz` that answers while the store waits.
 */
import { join } from 'node:path';

import BetterSqlite3 from 'better-sqlite3';
import t, { type Test } from 'tap';

import { auth, startTestGateway } from './helpers/gateway.js';

const prompt = { prompt: 'A tiger walking in snow' };

/** Another connection (as another process would) holding SQLite's write lock until `release`. */
function holdWriteLock(t: Test, path: string): { release: () => void } {
  const other = new BetterSqlite3(path);
  other.exec('BEGIN IMMEDIATE');
  let held = true;
  const release = (): void => {
    if (!held) return;
    held = false;
    other.exec('ROLLBACK');
    other.close();
  };
  t.teardown(release);
  return { release };
}

t.test('a store that cannot take the intent: 503 store_unavailable and no upstream create', async (t) => {
  const sqlitePath = join(t.testdir(), 'gateway.db');
  const gateway = await startTestGateway(t, { sqlitePath });
  const lock = holdWriteLock(t, sqlitePath);

  const withKey = await gateway.app.inject({
    method: 'POST',
    url: '/videos',
    headers: { ...auth(), 'idempotency-key': 'k-locked' },
    payload: prompt,
  });
  t.equal(withKey.statusCode, 503, withKey.body);
  t.equal(withKey.json<{ code: string }>().code, 'store_unavailable');
  t.ok(withKey.headers['retry-after'], 'with a retry-after');
  t.notMatch(withKey.body, /SQLITE|locked|busy/i, 'no driver text in the problem');
  const withoutKey = await gateway.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: prompt });
  t.equal(withoutKey.statusCode, 503, withoutKey.body);
  t.equal(gateway.sandbox.stats.creates, 0, 'the upstream was never asked: nothing paid for, nothing untracked');

  lock.release();
  const retried = await gateway.app.inject({
    method: 'POST',
    url: '/videos',
    headers: { ...auth(), 'idempotency-key': 'k-locked' },
    payload: prompt,
  });
  t.equal(retried.statusCode, 202, 'the same key works once the store is back: nothing was half-written');
  t.equal(gateway.sandbox.stats.creates, 1);
});
