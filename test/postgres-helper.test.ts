import pg from 'pg';
import t from 'tap';

import { freshSchema, postgresOrSkip } from './helpers/postgres.js';

const server = await postgresOrSkip(t);
if (server !== null) {
  t.test('each test gets its own schema, reached through its DATABASE_URL, dropped at teardown', async (t) => {
    let name = '';
    await t.test('inside', async (t) => {
      const { schema, url } = await freshSchema(t, server);
      name = schema;
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      t.teardown(() => client.end());
      const { rows } = await client.query<{ current_schema: string }>('select current_schema()');
      t.equal(rows[0]?.current_schema, schema, 'unqualified names resolve in the test schema');
      await client.query('create table things (id text primary key)');
    });
    const admin = new pg.Client({ connectionString: server.url() });
    await admin.connect();
    t.teardown(() => admin.end());
    const { rowCount } = await admin.query('select 1 from pg_namespace where nspname = $1', [name]);
    t.equal(rowCount, 0, 'the schema is gone after the test');
  });
}
