import t from 'tap';

import { createPostgresKysely, openPostgresStore } from '../src/store/postgres.js';
import { freshSchema, postgresOrSkip } from './helpers/postgres.js';
import { storeContract } from './helpers/store-contract.js';

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
