import { randomBytes } from 'node:crypto';

import pg from 'pg';
import type { Test } from 'tap';

/*
 * The machine's PostgreSQL (127.0.0.1:5432, trust auth, database `test`). Every test gets a schema of its own,
 * named at random and dropped at teardown, so parallel tap jobs never see each other's rows; its DATABASE_URL
 * selects that schema through the `search_path` startup option.
 */

export const POSTGRES_HOST = '127.0.0.1';
export const POSTGRES_PORT = 5432;
const DATABASE = 'test';
export const SKIP_LINE = `postgres tests skipped: no server at ${POSTGRES_HOST}:${POSTGRES_PORT}`;

/** A reachable server: the user that got in, and a small admin pool (public schema) for creating and dropping schemas. */
export interface PostgresServer {
  user: string;
  /** `postgres://user@127.0.0.1:5432/test`, optionally with `search_path` set to `schema`. */
  url(schema?: string): string;
}

/** One test's own schema. */
export interface PostgresSchema {
  schema: string;
  /** DATABASE_URL whose connections use the schema. */
  url: string;
  /** A raw client pool on the schema (closed at teardown): what an operator or another replica sees. */
  pool: pg.Pool;
}

function serverUrl(user: string, schema?: string): string {
  const base = `postgres://${encodeURIComponent(user)}@${POSTGRES_HOST}:${POSTGRES_PORT}/${DATABASE}`;
  return schema === undefined ? base : `${base}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
}

async function canConnect(user: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: serverUrl(user), connectionTimeoutMillis: 3_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

let probed: Promise<PostgresServer | null> | undefined;

/** The server, or null when none answers (cached per process). Users tried: `PGUSER`, `postgres`, `root`. */
export function findPostgres(): Promise<PostgresServer | null> {
  probed ??= (async () => {
    const users = [process.env['PGUSER'], 'postgres', 'root'].filter((user): user is string => user !== undefined && user !== '');
    for (const user of [...new Set(users)]) {
      if (await canConnect(user)) return { user, url: (schema?: string) => serverUrl(user, schema) };
    }
    return null;
  })();
  return probed;
}

/**
 * For a Postgres test file: the server, or null after ONE skipped line (`postgres tests skipped: no server at …`).
 * With `REQUIRE_POSTGRES=1` a missing server fails the file instead.
 */
export async function postgresOrSkip(t: Test): Promise<PostgresServer | null> {
  const server = await findPostgres();
  if (server !== null) return server;
  if (process.env['REQUIRE_POSTGRES'] === '1') {
    t.fail(`REQUIRE_POSTGRES=1 but there is no server at ${POSTGRES_HOST}:${POSTGRES_PORT}`);
    return null;
  }
  // A skipped subtest, not a plan: a file may hold tests that need no server, before or after this call.
  t.skip(SKIP_LINE, () => {});
  return null;
}

/** A fresh schema on `server` for test `t`, dropped (with everything in it) at teardown. */
export async function freshSchema(t: Test, server: PostgresServer): Promise<PostgresSchema> {
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: server.url() });
  await admin.connect();
  try {
    await admin.query(`create schema ${schema}`);
  } finally {
    await admin.end();
  }
  const url = server.url(schema);
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on('error', () => {});
  // Idle connections hold no locks, so the drop does not wait for stores closed by later teardowns.
  t.teardown(async () => {
    await pool.end();
    const dropper = new pg.Client({ connectionString: server.url() });
    await dropper.connect();
    try {
      await dropper.query(`drop schema if exists ${schema} cascade`);
    } finally {
      await dropper.end();
    }
  });
  return { schema, url, pool };
}
