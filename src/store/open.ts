import type { Config } from '../config.js';
import type { Logger } from '../lib/logger.js';
import { openPostgresStore } from './postgres.js';
import type { Store } from './repositories.js';
import { openSqliteStore } from './sqlite.js';

/** The store `DATABASE_URL` names: Postgres for `postgres://…`, else the SQLite file. */
export function openStore(
  config: Pick<Config, 'sqlitePath' | 'postgresUrl' | 'databasePoolSize'> & Partial<Pick<Config, 'storeLockWaitMs'>>,
  hooks: { onIdleError?: (error: Error) => void; onMigrated?: (applied: string[]) => void; logger?: Pick<Logger, 'error'> } = {},
): Promise<Store> {
  const { logger, ...pgHooks } = hooks;
  if (config.postgresUrl !== null) return openPostgresStore({ url: config.postgresUrl, poolSize: config.databasePoolSize, ...pgHooks });
  return openSqliteStore({
    path: config.sqlitePath ?? ':memory:',
    ...(config.storeLockWaitMs === undefined ? {} : { lockWaitMs: config.storeLockWaitMs }),
    ...(logger === undefined ? {} : { logger }),
    ...(hooks.onMigrated === undefined ? {} : { onMigrated: hooks.onMigrated }),
  });
}
