import type { Config } from '../config.js';
import { openPostgresStore } from './postgres.js';
import type { Store } from './repositories.js';
import { openSqliteStore } from './sqlite.js';

/** The store `DATABASE_URL` names: Postgres for `postgres://…`, else the SQLite file. */
export function openStore(
  config: Pick<Config, 'sqlitePath' | 'postgresUrl' | 'databasePoolSize'>,
  hooks: { onIdleError?: (error: Error) => void; onMigrated?: (applied: string[]) => void } = {},
): Promise<Store> {
  if (config.postgresUrl !== null) return openPostgresStore({ url: config.postgresUrl, poolSize: config.databasePoolSize, ...hooks });
  return openSqliteStore({
    path: config.sqlitePath ?? ':memory:',
    ...(hooks.onMigrated === undefined ? {} : { onMigrated: hooks.onMigrated }),
  });
}
