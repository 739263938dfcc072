/**
 * The machine's Postgres (127.0.0.1:5432, trust auth, database `test`) for the tests of this branch that only
 * need a connection (LISTEN/NOTIFY), not a store: one skip line when it is absent, unless `REQUIRE_POSTGRES=1`.
 */
import pg from 'pg';
import type { Test } from 'tap';

export const postgresHost = '127.0.0.1';
export const postgresPort = 5432;
const skipLine = `postgres tests skipped: no server at ${postgresHost}:${postgresPort}`;

let found: Promise<string | null> | undefined;

/** A working connection URL (user `postgres`, else `root`), or null when nothing answers. */
export function postgresUrl(): Promise<string | null> {
  found ??= (async () => {
    for (const user of ['postgres', 'root']) {
      const url = `postgres://${user}@${postgresHost}:${postgresPort}/test`;
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
      client.on('error', () => {});
      try {
        await client.connect();
        await client.query('SELECT 1');
        return url;
      } catch {
        /* try the next user */
      } finally {
        await client.end().catch(() => {});
      }
    }
    return null;
  })();
  return found;
}

/** Call at the top of a Postgres test file: the URL, or null (the file then plans zero tests with the skip line). */
export async function requirePostgres(t: Test): Promise<string | null> {
  const url = await postgresUrl();
  if (url !== null) return url;
  if (process.env['REQUIRE_POSTGRES'] === '1') throw new Error(`${skipLine}, and REQUIRE_POSTGRES=1`);
  t.plan(0, skipLine);
  return null;
}

/** A plain connection of the test's own (to NOTIFY, or to terminate backends); ended at teardown. */
export async function postgresClient(t: Test, url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  t.teardown(() => client.end());
  return client;
}
