import { type Kysely, sql } from 'kysely';

import { StoreUnavailable } from '../../errors.js';
import type { Store } from '../repositories.js';
import type { Database } from '../tables.js';
import { createDeliveryRepository } from './delivery-repository.js';
import type { StoreDialect } from './dialect.js';
import { createIdempotencyRepository } from './idempotency-repository.js';
import { createRowMappers } from './row-mappers.js';
import { createVideoRepository } from './video-repository.js';

/**
 * The repository with every method's connection failures turned into `StoreUnavailable` (a 503 with retry-after for
 * requests; a logged, backed-off claim for workers). Other errors pass unchanged.
 */
function guarded<R extends object>(repository: R, isUnavailable: (error: unknown) => boolean): R {
  const wrapped: Record<string, unknown> = {};
  for (const [name, member] of Object.entries(repository)) {
    if (typeof member !== 'function') {
      wrapped[name] = member;
      continue;
    }
    const method = member as (...args: unknown[]) => Promise<unknown>;
    wrapped[name] = async (...args: unknown[]): Promise<unknown> => {
      try {
        return await method(...args);
      } catch (error) {
        throw isUnavailable(error) ? new StoreUnavailable(error) : error;
      }
    };
  }
  return wrapped as R;
}

/**
 * A `Store` over any Kysely dialect: the queries are written once here; the dialect supplies only its own
 * statements. `close` runs `afterDestroy` (the driver's own cleanup) once Kysely has let go of the database.
 */
export function createKyselyStore(db: Kysely<Database>, dialect: StoreDialect, afterDestroy: () => void = () => {}): Store {
  const mappers = createRowMappers(dialect.json);
  const guard = <R extends object>(repository: R): R => guarded(repository, (error) => dialect.isUnavailable(error));
  let closing: Promise<void> | null = null;
  return {
    videos: guard(createVideoRepository(db, dialect, mappers)),
    deliveries: guard(createDeliveryRepository(db, dialect, mappers)),
    idempotencyKeys: guard(createIdempotencyRepository(db, dialect, mappers)),
    ...guard({
      async ping(): Promise<void> {
        await sql`select 1`.execute(db);
      },
      async heartbeat(now: number): Promise<void> {
        await db
          .insertInto('store_heartbeat')
          .values({ id: 'readiness', beat_at: now })
          .onConflict((conflict) => conflict.column('id').doUpdateSet({ beat_at: now }))
          .execute();
      },
    }),
    close() {
      closing ??= db.destroy().finally(afterDestroy);
      return closing;
    },
  };
}
