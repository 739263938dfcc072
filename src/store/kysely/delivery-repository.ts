import { type Kysely, sql } from 'kysely';

import { eventForStatus, isTerminal } from '../../lifecycle.js';
import type { DeliveryAttemptResult, RedeliverResult } from '../records.js';
import type { DeliveryRepository } from '../repositories.js';
import type { Database, VideoRow } from '../tables.js';
import { claimableStatuses } from './delivery-claims.js';
import type { StoreDialect } from './dialect.js';
import { claimedDeliveryFromRow, type RowMappers, webhookColumns } from './row-mappers.js';
import { deliveriesDue, videoChanged } from './video-changes.js';

/**
 * Copies the state of a video's latest event (the most recently written outbox row; a terminal event wins a tie
 * with `video.processing`) onto the video row. Returns the updated video row. Takes a transaction too.
 */
export async function refreshWebhookState(db: Kysely<Database>, videoId: string): Promise<VideoRow | undefined> {
  const latest = await db
    .selectFrom('webhook_deliveries')
    .select(['status', 'attempts', 'last_attempt_at', 'next_attempt_at', 'last_response_status'])
    .where('video_id', '=', videoId)
    .orderBy('created_at', 'desc')
    .orderBy(sql`case when event_type = 'video.processing' then 0 else 1 end`, 'desc')
    .orderBy('message_id', 'desc')
    .limit(1)
    .executeTakeFirst();
  return db
    .updateTable('videos')
    .set((eb) => ({ ...webhookColumns(latest), version: eb('version', '+', 1) }))
    .where('id', '=', videoId)
    .returningAll()
    .executeTakeFirst();
}

/** One attempt's log entry and, under its lease, its outcome (see `DeliveryRepository.recordAttempt`). Inside a transaction. */
async function recordOne(trx: Kysely<Database>, dialect: StoreDialect, result: DeliveryAttemptResult): Promise<VideoRow | undefined> {
  const delivery = await trx
    .selectFrom('webhook_deliveries')
    .select(['video_id', 'event_type'])
    .where('message_id', '=', result.messageId)
    .executeTakeFirst();
  if (delivery === undefined) return undefined;
  // The attempt happened whatever became of the lease: the log always gets it.
  await trx
    .insertInto('delivery_attempts')
    .values({
      message_id: result.messageId,
      video_id: delivery.video_id,
      event_type: delivery.event_type,
      attempt: result.attempt,
      at: result.at,
      duration_ms: Math.max(0, Math.round(result.durationMs)),
      response_status: result.responseStatus,
      error: result.error,
      response_excerpt: result.responseExcerpt,
    })
    .execute();
  const updated = await trx
    .updateTable('webhook_deliveries')
    .set((eb) => ({
      status: result.next.status,
      attempts: eb('attempts', '+', 1),
      next_attempt_at: result.next.status === 'retrying' ? result.next.nextAttemptAt : null,
      lease_until: null,
      last_attempt_at: result.at,
      last_response_status: result.responseStatus,
      last_error: result.error,
      updated_at: result.now,
    }))
    .where('message_id', '=', result.messageId)
    // Fencing: a redelivery (or a dispatcher that took over an expired lease) owns the row now.
    .where('lease_until', '=', result.leaseUntil)
    .executeTakeFirst();
  if (Number(updated.numUpdatedRows) === 0) return undefined;
  const video = await refreshWebhookState(trx, delivery.video_id);
  await videoChanged(trx, dialect, [video]);
  return video;
}

export function createDeliveryRepository(db: Kysely<Database>, dialect: StoreDialect, mappers: RowMappers): DeliveryRepository {
  const recordAttempts: DeliveryRepository['recordAttempts'] = async (results) => {
    if (results.length === 0) return [];
    const rows = await db.transaction().execute(async (trx) => {
      const written: Array<VideoRow | undefined> = [];
      for (const result of results) written.push(await recordOne(trx, dialect, result));
      return written;
    });
    return rows.map((row) => (row === undefined ? undefined : mappers.videoFromRow(row)));
  };

  return {
    async claimDue(now, options) {
      if (options.limit <= 0) return [];
      const rows = await dialect.serializeDeliveryClaims(db, async (claimer) => {
        let limit = Math.floor(options.limit);
        if (options.maxInFlight !== undefined) {
          // Leased rows are pending or retrying (an attempt's record clears the lease): the due index finds them.
          const { inFlight } = await claimer
            .selectFrom('webhook_deliveries')
            .select((eb) => eb.fn.countAll<number>().as('inFlight'))
            .where('status', 'in', claimableStatuses)
            .where('lease_until', '>', now)
            .executeTakeFirstOrThrow();
          limit = Math.min(limit, Math.floor(options.maxInFlight) - Number(inFlight));
        }
        return limit <= 0 ? [] : dialect.claimDueDeliveryRows(claimer, now, { ...options, limit });
      });
      return rows.map(claimedDeliveryFromRow);
    },

    snapshotPayload(messageId, payload) {
      return db.transaction().execute(async (trx) => {
        await trx
          .updateTable('webhook_deliveries')
          .set({ payload })
          .where('message_id', '=', messageId)
          .where('payload', 'is', null)
          .execute();
        const row = await trx.selectFrom('webhook_deliveries').select('payload').where('message_id', '=', messageId).executeTakeFirst();
        return row === undefined ? undefined : (row.payload ?? payload);
      });
    },

    async recordAttempt(result) {
      const [video] = await recordAttempts([result]);
      return video;
    },

    recordAttempts,

    async release(messageId, leaseUntil) {
      await dialect.atomic(db, async (trx) => {
        const released = await trx
          .updateTable('webhook_deliveries')
          .set({ lease_until: null })
          .where('message_id', '=', messageId)
          .where('lease_until', '=', leaseUntil)
          .executeTakeFirst();
        // Due again at once: another replica's dispatcher may take it.
        if (Number(released.numUpdatedRows) > 0) await deliveriesDue(trx, dialect);
      });
    },

    async listAttempts(videoId, limit) {
      const rows = await db
        .selectFrom('delivery_attempts')
        .select(['message_id', 'event_type', 'attempt', 'at', 'duration_ms', 'response_status', 'error'])
        .where('video_id', '=', videoId)
        .orderBy('id', 'desc')
        .limit(Math.max(0, Math.floor(limit)))
        .execute();
      return rows.map((row) => ({
        messageId: row.message_id,
        eventType: row.event_type,
        attempt: row.attempt,
        at: row.at,
        durationMs: row.duration_ms,
        responseStatus: row.response_status,
        error: row.error,
      }));
    },

    redeliver(videoId, now) {
      return db.transaction().execute(async (trx): Promise<RedeliverResult> => {
        const video = await trx.selectFrom('videos').select(['id', 'status']).where('id', '=', videoId).executeTakeFirst();
        if (video === undefined) return { kind: 'not_found' };
        if (video.status === 'submitting') return { kind: 'not_terminal' };
        const eventType = eventForStatus[video.status];
        if (!isTerminal(video.status) || eventType === null) return { kind: 'not_terminal' };
        const delivery = await trx
          .updateTable('webhook_deliveries')
          .set((eb) => ({
            status: 'pending' as const,
            next_attempt_at: now,
            // Releases any lease: an attempt still in flight is fenced out of the row (its log entry stays).
            lease_until: null,
            series_start_attempts: eb.ref('attempts'),
            updated_at: now,
          }))
          .where('video_id', '=', videoId)
          .where('event_type', '=', eventType)
          .returning('message_id')
          .executeTakeFirst();
        if (delivery === undefined) return { kind: 'no_webhook' };
        await deliveriesDue(trx, dialect);
        const row = await refreshWebhookState(trx, videoId);
        if (row === undefined) return { kind: 'not_found' };
        await videoChanged(trx, dialect, [row]);
        return { kind: 'enqueued', video: mappers.videoFromRow(row), messageId: delivery.message_id, eventType };
      });
    },
  };
}
