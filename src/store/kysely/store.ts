import { type Kysely, sql } from 'kysely';

import type { Store } from '../repositories.js';
import type { Database } from '../tables.js';
import { createDeliveryRepository } from './delivery-repository.js';
import type { StoreDialect } from './dialect.js';
import { createIdempotencyRepository } from './idempotency-repository.js';
import { createRowMappers } from './row-mappers.js';
import { createVideoRepository } from './video-repository.js';

/**
 * A `Store` over any Kysely dialect: the queries are written once here; the dialect supplies only its own
 * statements. `close` runs `afterDestroy` (the driver's own cleanup) once Kysely has let go of the database.
 */
export function createKyselyStore(db: Kysely<Database>, dialect: StoreDialect, afterDestroy: () => void = () => {}): Store {
  const mappers = createRowMappers(dialect.json);
  let closing: Promise<void> | null = null;
  return {
    videos: createVideoRepository(db, dialect, mappers),
    deliveries: createDeliveryRepository(db, dialect, mappers),
    idempotencyKeys: createIdempotencyRepository(db, dialect, mappers),
    async ping() {
      await sql`select 1`.execute(db);
    },
    async heartbeat(now) {
      await db
        .insertInto('store_heartbeat')
        .values({ id: 'readiness', beat_at: now })
        .onConflict((conflict) => conflict.column('id').doUpdateSet({ beat_at: now }))
        .execute();
    },
    close() {
      closing ??= db.destroy().finally(afterDestroy);
      return closing;
    },
  };
}
