// `npm run migrate`: applies the store's migrations to DATABASE_URL and exits (for deploy pipelines). Replicas
// migrate at start too; on Postgres an advisory lock makes concurrent runs apply each migration once.
import { formatConfigProblems, loadConfig } from '../src/config.js';
import { openStore } from '../src/store/open.js';
import { describePostgresUrl } from '../src/store/postgres.js';

const loaded = loadConfig(process.env);
if (!loaded.ok) {
  process.stderr.write(`${formatConfigProblems(loaded.problems)}\n`);
  process.exit(1);
}
const { config } = loaded;
const target = config.postgresUrl === null ? `SQLite ${config.sqlitePath ?? ''}` : `Postgres ${describePostgresUrl(config.postgresUrl)}`;
try {
  let applied: string[] = [];
  const store = await openStore(config, { onMigrated: (names) => (applied = names) });
  await store.close();
  process.stdout.write(applied.length === 0 ? `${target}: schema already current\n` : `${target}: applied ${applied.join(', ')}\n`);
} catch (error) {
  process.stderr.write(`migration failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
