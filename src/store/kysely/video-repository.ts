import { type Kysely, sql } from 'kysely';

import { isTerminal, runningStatuses } from '../../lifecycle.js';
import type { ErasureReason, OutboxEvent, VideoRecord, VideoTombstone, VideoTransition } from '../records.js';
import type { VideoRepository } from '../repositories.js';
import type { Database, StoredVideoStatus, VideoRow } from '../tables.js';
import { refreshWebhookState } from './delivery-repository.js';
import type { StoreDialect } from './dialect.js';
import { completeIdempotencyRow } from './idempotency-repository.js';
import { newDeliveryRow, type RowMappers } from './row-mappers.js';
import { deliveriesDue, videoChanged } from './video-changes.js';

/**
 * `status in ('queued', 'processing')` with the statuses inlined as SQL literals, not bound parameters: only then
 * can SQLite prove a query matches the partial index `videos_due_idx` (it does not compare parameters inside an IN
 * list against the index's WHERE clause). The values are constants; other dialects do not mind.
 */
export const runningStatusLiterals = runningStatuses.map((status) => sql.lit(status));

const terminalStatusLiterals = (['completed', 'failed'] as const).map((status) => sql.lit(status));

/** What an erased video's tombstone is made of: the row's id, owner, times and version, never its content. */
const tombstoneColumns = ['id', 'client_id', 'created_at', 'updated_at', 'completed_at', 'version'] as const;
type ErasedRow = Pick<VideoRow, (typeof tombstoneColumns)[number]>;

/**
 * The rest of an erasure, in the transaction that deleted the video rows (`DELETE … RETURNING`, so two erasers of
 * one video never both get it): the outbox rows (pending ones are never sent) and their attempt log go, the
 * idempotency key that created each video keeps only its name and expiry, and each video leaves a tombstone.
 * The outbox rows cascade from the video already; deleting them by name keeps that true on any schema.
 */
async function eraseDependents(trx: Kysely<Database>, rows: ErasedRow[], now: number, reason: ErasureReason): Promise<VideoTombstone[]> {
  if (rows.length === 0) return [];
  const ids = rows.map((row) => row.id);
  await trx.deleteFrom('delivery_attempts').where('video_id', 'in', ids).execute();
  await trx.deleteFrom('webhook_deliveries').where('video_id', 'in', ids).execute();
  await trx
    .updateTable('idempotency_keys')
    .set({ fingerprint: '', response_status: null, response_body: null, response_headers_json: null, erased_at: now })
    .where('video_id', 'in', ids)
    .execute();
  const tombstones = rows.map((row): VideoTombstone => ({
    id: row.id,
    clientId: row.client_id,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    completedAt: row.completed_at,
    deletedAt: now,
    version: row.version + 1,
    reason,
  }));
  await trx
    .insertInto('video_tombstones')
    .values(
      tombstones.map((tombstone) => ({
        id: tombstone.id,
        client_id: tombstone.clientId,
        created_at: tombstone.createdAt,
        updated_at: tombstone.updatedAt,
        completed_at: tombstone.completedAt,
        deleted_at: tombstone.deletedAt,
        version: tombstone.version,
        reason: tombstone.reason,
      })),
    )
    .execute();
  return tombstones;
}

export function createVideoRepository(db: Kysely<Database>, dialect: StoreDialect, mappers: RowMappers): VideoRepository {
  const { videoFromRow } = mappers;

  /** A status change from one of `fromStatuses` with its outbox rows, in one transaction; releases the lease. */
  const changeStatus = async (
    id: string,
    now: number,
    transition: VideoTransition,
    nextPollAt: number | null,
    events: OutboxEvent[],
    fromStatuses: readonly StoredVideoStatus[],
  ): Promise<VideoRecord | undefined> => {
    if (fromStatuses.length === 0) return undefined;
    const terminal = isTerminal(transition.status);
    if (!terminal && nextPollAt === null) {
      // A running video without a next poll would never be looked at again.
      throw new TypeError(`applyTransition(${id}): a ${transition.status} video needs a nextPollAt`);
    }
    // The state change and its outbox rows commit together or not at all (transactional outbox).
    return db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable('videos')
        .set((eb) => ({
          status: transition.status,
          upstream_state: transition.upstreamState,
          estimated_wait_seconds: transition.estimatedWaitSeconds,
          result_json: mappers.toNullableJson(transition.result),
          failure_json: mappers.toNullableJson(transition.failure),
          updated_at: now,
          completed_at: terminal ? now : null,
          next_poll_at: terminal ? null : nextPollAt,
          lease_until: null,
          poll_attempts: eb('poll_attempts', '+', 1),
          not_found_since: null,
          version: eb('version', '+', 1),
        }))
        .where('id', '=', id)
        // Terminal states never change: a late or contradictory answer matches no row.
        .where('status', 'in', fromStatuses)
        .returningAll()
        .executeTakeFirst();
      if (row === undefined) return undefined;
      const updated = videoFromRow(row);
      if (events.length === 0) {
        await videoChanged(trx, dialect, [row]);
        return updated;
      }
      await trx
        .insertInto('webhook_deliveries')
        .values(events.map((event) => newDeliveryRow(updated, event, now)))
        .execute();
      await deliveriesDue(trx, dialect);
      // The video's webhook state now describes the new event ('pending').
      const refreshed = await refreshWebhookState(trx, id);
      await videoChanged(trx, dialect, [refreshed ?? row]);
      return refreshed === undefined ? updated : videoFromRow(refreshed);
    });
  };

  return {
    async tombstone(id) {
      const row = await db.selectFrom('video_tombstones').selectAll().where('id', '=', id).executeTakeFirst();
      if (row === undefined) return undefined;
      return {
        id: row.id,
        clientId: row.client_id,
        createdAt: Number(row.created_at),
        updatedAt: Number(row.updated_at),
        completedAt: row.completed_at === null ? null : Number(row.completed_at),
        deletedAt: Number(row.deleted_at),
        version: Number(row.version),
        reason: row.reason,
      };
    },
    async insert(video, completesKey) {
      const insert = async (trx: Kysely<Database>): Promise<VideoRecord> => {
        const row = await trx.insertInto('videos').values(mappers.newVideoRow(video)).returningAll().executeTakeFirstOrThrow();
        await videoChanged(trx, dialect, [row]);
        return videoFromRow(row);
      };
      if (completesKey === undefined) return dialect.atomic(db, insert);
      // The video and its key's stored answer commit together or not at all.
      return db.transaction().execute(async (trx) => {
        const record = await insert(trx);
        await completeIdempotencyRow(trx, mappers, completesKey.claim, completesKey.response, record.id);
        return record;
      });
    },

    async get(id) {
      const row = await db.selectFrom('videos').selectAll().where('id', '=', id).executeTakeFirst();
      return row === undefined ? undefined : videoFromRow(row);
    },

    async list(clientId, query) {
      const { status, beforeId } = query;
      // Served by videos_client_id_idx (client_id, id desc).
      const rows = await db
        .selectFrom('videos')
        .selectAll()
        .where('client_id', '=', clientId)
        // A recorded intent reads as `queued`.
        .$if(status !== undefined, (select) =>
          select.where('status', 'in', status === 'queued' ? (['queued', 'submitting'] as const) : [status ?? 'queued']),
        )
        .$if(beforeId !== undefined, (select) => select.where('id', '<', beforeId ?? ''))
        .orderBy('id', 'desc')
        .limit(Math.max(0, Math.floor(query.limit)))
        .execute();
      return rows.map(videoFromRow);
    },

    async recordSubmission(video, claim) {
      const row = {
        ...mappers.newVideoRow({
          ...video,
          upstreamId: '',
          status: 'queued',
          upstreamState: null,
          estimatedWaitSeconds: null,
          result: null,
          failure: null,
          nextPollAt: null,
        }),
        upstream_id: null,
        status: 'submitting' as const,
      };
      if (claim === undefined) {
        await dialect.atomic(db, async (trx) => {
          await videoChanged(trx, dialect, [await trx.insertInto('videos').values(row).returning(['id', 'version']).executeTakeFirst()]);
        });
        return true;
      }
      // The intent and its key's link commit together: a key linked to a video is never taken over by a retry.
      return db.transaction().execute(async (trx) => {
        const linked = await trx
          .updateTable('idempotency_keys')
          .set({ video_id: video.id })
          .where('client_id', '=', claim.clientId)
          .where('key', '=', claim.key)
          .where('state', '=', 'in_progress')
          .where('created_at', '=', claim.startedAt)
          .where('video_id', 'is', null)
          .executeTakeFirst();
        if (Number(linked.numUpdatedRows) !== 1) return false;
        await videoChanged(trx, dialect, [await trx.insertInto('videos').values(row).returning(['id', 'version']).executeTakeFirst()]);
        return true;
      });
    },

    async acceptSubmission(id, accepted, completesKey) {
      const accept = async (trx: Kysely<Database>): Promise<VideoRecord | undefined> => {
        const row = await trx
          .updateTable('videos')
          .set((eb) => ({
            upstream_id: accepted.upstreamId,
            status: accepted.status,
            upstream_state: accepted.upstreamState,
            estimated_wait_seconds: accepted.estimatedWaitSeconds,
            next_poll_at: accepted.nextPollAt,
            updated_at: accepted.now,
            version: eb('version', '+', 1),
          }))
          .where('id', '=', id)
          .where('status', '=', 'submitting')
          .returningAll()
          .executeTakeFirst();
        await videoChanged(trx, dialect, [row]);
        return row === undefined ? undefined : videoFromRow(row);
      };
      if (completesKey === undefined) return dialect.atomic(db, accept);
      return db.transaction().execute(async (trx) => {
        const record = await accept(trx);
        if (record !== undefined) await completeIdempotencyRow(trx, mappers, completesKey.claim, completesKey.response);
        return record;
      });
    },

    async discardSubmission(id, key) {
      await db.transaction().execute(async (trx) => {
        const discarded = await trx
          .deleteFrom('videos')
          .where('id', '=', id)
          .where('status', '=', 'submitting')
          .returning(['id', 'version'])
          .executeTakeFirst();
        // Gone: announced as the version after the last one, like an erasure.
        await videoChanged(trx, dialect, [discarded === undefined ? undefined : { id: discarded.id, version: discarded.version + 1 }]);
        if (key === undefined) return;
        if (key.response !== null) {
          await completeIdempotencyRow(trx, mappers, key.claim, key.response);
          return;
        }
        await trx
          .deleteFrom('idempotency_keys')
          .where('client_id', '=', key.claim.clientId)
          .where('key', '=', key.claim.key)
          .where('state', '=', 'in_progress')
          .where('created_at', '=', key.claim.startedAt)
          .execute();
      });
    },

    async staleSubmissions(recordedBefore, limit) {
      const rows = await db
        .selectFrom('videos')
        .selectAll()
        .where('status', '=', 'submitting')
        .where('created_at', '<=', recordedBefore)
        .orderBy('created_at')
        .limit(Math.max(0, Math.floor(limit)))
        .execute();
      return rows.map(videoFromRow);
    },

    failSubmission(id, now, failure, events) {
      return changeStatus(
        id,
        now,
        { status: 'failed', upstreamState: null, estimatedWaitSeconds: null, result: null, failure },
        null,
        events,
        ['submitting'],
      );
    },

    async upstreamIdForClient(clientId, videoId) {
      const row = await db
        .selectFrom('videos')
        .select('upstream_id')
        .where('id', '=', videoId)
        .where('client_id', '=', clientId)
        .executeTakeFirst();
      return row?.upstream_id ?? undefined;
    },

    async claimDue(now, limit, leaseMs) {
      if (limit <= 0) return [];
      const rows = await dialect.claimDueVideoRows(db, now, Math.floor(limit), leaseMs);
      return rows.map(videoFromRow);
    },

    applyTransition(id, now, transition, nextPollAt, events, expectedStatus) {
      // Compare-and-set on the status the caller saw: two pollers racing on one video emit its event once.
      const from = runningStatuses.filter((status) => expectedStatus === undefined || status === expectedStatus);
      return changeStatus(id, now, transition, nextPollAt, events, from);
    },

    async pollSoon(id, at) {
      const result = await db
        .updateTable('videos')
        .set({ next_poll_at: at })
        .where('id', '=', id)
        .where('status', 'in', runningStatusLiterals)
        .where('next_poll_at', '>', at)
        .executeTakeFirst();
      return result.numUpdatedRows > 0n;
    },

    async reschedulePoll(id, now, schedule) {
      const { estimatedWaitSeconds, upstreamState } = schedule;
      await dialect.atomic(db, async (trx) => {
        const row = await trx
          .updateTable('videos')
          .set((eb) => ({
            next_poll_at: schedule.nextPollAt,
            poll_attempts: schedule.pollAttempts,
            not_found_since: schedule.notFoundSince,
            lease_until: null,
            version: eb('version', '+', 1),
            ...(upstreamState === undefined ? {} : { upstream_state: upstreamState }),
            ...(estimatedWaitSeconds === undefined
              ? {}
              : {
                  estimated_wait_seconds: estimatedWaitSeconds,
                  // updated_at tracks what clients can see: it moves only when the estimate really changed.
                  // (SET expressions read the row's old values.)
                  updated_at: eb
                    .case()
                    .when('estimated_wait_seconds', 'is distinct from', estimatedWaitSeconds)
                    .then(now)
                    .else(eb.ref('updated_at'))
                    .end(),
                }),
          }))
          .where('id', '=', id)
          .where('status', 'in', runningStatuses)
          .returning(['id', 'version'])
          .executeTakeFirst();
        await videoChanged(trx, dialect, [row]);
      });
    },

    async refreshResult(id, now, result) {
      const row = await dialect.atomic(db, async (trx) => {
        const updated = await trx
          .updateTable('videos')
          .set((eb) => ({ result_json: mappers.toJson(result), updated_at: now, version: eb('version', '+', 1) }))
          .where('id', '=', id)
          .where('status', '=', 'completed')
          .returningAll()
          .executeTakeFirst();
        await videoChanged(trx, dialect, [updated]);
        return updated;
      });
      return row === undefined ? undefined : videoFromRow(row);
    },

    async countRunning() {
      const { count } = await db
        .selectFrom('videos')
        .select((eb) => eb.fn.countAll().as('count'))
        .where('status', 'in', runningStatusLiterals)
        .executeTakeFirstOrThrow();
      // SQLite answers a number, Postgres a bigint string.
      return Number(count);
    },

    erase(clientId, id, now) {
      return db.transaction().execute(async (trx) => {
        const rows = await trx
          .deleteFrom('videos')
          .where('id', '=', id)
          .where('client_id', '=', clientId)
          .returning(tombstoneColumns)
          .execute();
        const [tombstone] = await eraseDependents(trx, rows, now, 'deleted');
        await videoChanged(trx, dialect, [tombstone]);
        return tombstone;
      });
    },

    eraseTerminalBefore(completedBefore, limit, now) {
      if (limit <= 0) return Promise.resolve([]);
      return db.transaction().execute(async (trx) => {
        // Served by videos_completed_at_idx; at most `limit` rows per transaction, however many are due.
        const rows = await trx
          .deleteFrom('videos')
          .where('id', 'in', (eb) =>
            eb
              .selectFrom('videos')
              .select('id')
              .where('completed_at', '<=', completedBefore)
              .where('status', 'in', terminalStatusLiterals)
              .orderBy('completed_at')
              .limit(Math.floor(limit)),
          )
          .returning(tombstoneColumns)
          .execute();
        const tombstones = await eraseDependents(trx, rows, now, 'retention');
        // One announcement per erased video: its tombstone's id and version (the row's last version + 1).
        await videoChanged(trx, dialect, tombstones);
        return tombstones;
      });
    },
  };
}
