import type { Kysely } from 'kysely';

import type { BeginIdempotentResult, IdempotencyClaim, StoredResponse } from '../records.js';
import type { IdempotencyRepository } from '../repositories.js';
import type { Database } from '../tables.js';
import type { StoreDialect } from './dialect.js';
import type { RowMappers } from './row-mappers.js';

/** Stores the final response of a claimed key; matches no row when the claim was lost. Takes a transaction too. */
export async function completeIdempotencyRow(
  db: Kysely<Database>,
  mappers: RowMappers,
  claim: IdempotencyClaim,
  response: StoredResponse,
  /** The video this answer created (its erasure empties the key). */
  videoId: string | null = null,
): Promise<void> {
  await db
    .updateTable('idempotency_keys')
    .set({
      state: 'completed',
      response_status: response.status,
      response_body: response.body,
      response_headers_json: mappers.toJson(response.headers),
      // A key linked when its intent was recorded keeps that link (its erasure must still empty the key).
      ...(videoId === null ? {} : { video_id: videoId }),
    })
    .where('client_id', '=', claim.clientId)
    .where('key', '=', claim.key)
    .where('state', '=', 'in_progress')
    // A claim taken over after it was judged orphaned belongs to the newer request now.
    .where('created_at', '=', claim.startedAt)
    .execute();
}

export function createIdempotencyRepository(db: Kysely<Database>, dialect: StoreDialect, mappers: RowMappers): IdempotencyRepository {
  return {
    async begin(request): Promise<BeginIdempotentResult> {
      const { clientId, key, now, staleBefore } = request;
      // Two attempts: a row seen as present by the claim can be deleted (abandoned, pruned) before it is read.
      for (let attempt = 0; attempt < 2; attempt += 1) {
        const startedAt = await dialect.claimIdempotencyKey(
          db,
          {
            client_id: clientId,
            key,
            fingerprint: request.fingerprint,
            state: 'in_progress',
            response_status: null,
            response_body: null,
            response_headers_json: null,
            created_at: now,
            expires_at: request.expiresAt,
            video_id: null,
            erased_at: null,
          },
          { now, staleBefore },
        );
        if (startedAt !== undefined) return { started: true, claim: { clientId, key, startedAt } };
        const existing = await db
          .selectFrom('idempotency_keys')
          .selectAll()
          .where('client_id', '=', clientId)
          .where('key', '=', key)
          .executeTakeFirst();
        if (existing !== undefined) return { started: false, existing: mappers.idempotencyRecordFromRow(existing) };
      }
      throw new Error('idempotency key kept changing under a request; giving up');
    },

    complete: (claim, response) => completeIdempotencyRow(db, mappers, claim, response),

    async completeForVideo(videoId, response) {
      await db
        .updateTable('idempotency_keys')
        .set({
          state: 'completed',
          response_status: response.status,
          response_body: response.body,
          response_headers_json: mappers.toJson(response.headers),
        })
        .where('video_id', '=', videoId)
        .where('state', '=', 'in_progress')
        .execute();
    },

    async abandon(claim) {
      await db
        .deleteFrom('idempotency_keys')
        .where('client_id', '=', claim.clientId)
        .where('key', '=', claim.key)
        .where('state', '=', 'in_progress')
        .where('created_at', '=', claim.startedAt)
        .execute();
    },

    async prune(now) {
      const result = await db.deleteFrom('idempotency_keys').where('expires_at', '<=', now).executeTakeFirst();
      return Number(result.numDeletedRows);
    },
  };
}
