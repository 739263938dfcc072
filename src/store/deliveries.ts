/**
 * The outbox side of the Kysely store (DESIGN §3): claiming due deliveries under a lease, recording attempts,
 * the delivery log and redelivery. Dialect-neutral queries, except the claim, which each dialect supplies.
 * `KyselyVideoStore` (sqlite.ts) delegates its `DeliveryStore` methods here.
 */
import { sql, type Kysely } from 'kysely';
import type { WebhookEventType, WebhookSummary } from '../../schemas/video.js';
import { toIso } from '../clock.js';
import type {
  ClaimDeliveriesOptions,
  ClaimedDelivery,
  DeliveryAttemptEntry,
  DeliveryAttemptResult,
  RedeliverResult,
} from './delivery-types.js';
import type { Database, VideoRow, WebhookDeliveryRow } from './schema.js';
import type { VideoRecord } from './types.js';

/** Statuses a dispatcher may claim. */
const claimableStatuses = ['pending', 'retrying'] as const;

// ---------------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------------

/** The callback URL of a stored request (`request_json`) and its `host[:port]`, or nulls without one. */
export function deliveryTarget(requestJson: string): { url: string | null; host: string | null } {
  const callbackUrl = (JSON.parse(requestJson) as { callbackUrl?: unknown }).callbackUrl;
  if (typeof callbackUrl !== 'string') return { url: null, host: null };
  return { url: callbackUrl, host: new URL(callbackUrl).host };
}

/** The public summary of one outbox row (DESIGN §2.2 `webhook`). Pure. */
export function webhookSummaryFromRow(
  row: Pick<WebhookDeliveryRow, 'status' | 'attempts' | 'last_attempt_at' | 'next_attempt_at' | 'last_response_status'>,
): WebhookSummary {
  const status: WebhookSummary['status'] =
    row.status === 'delivering' ? (row.attempts > 0 ? 'retrying' : 'pending') : row.status;
  const waiting = status === 'pending' || status === 'retrying';
  return {
    status,
    attempts: row.attempts,
    lastAttemptAt: row.last_attempt_at === null ? null : toIso(row.last_attempt_at),
    nextAttemptAt: waiting && row.next_attempt_at !== null ? toIso(row.next_attempt_at) : null,
    lastResponseStatus: row.last_response_status,
  };
}

export function claimedDeliveryFromRow(row: WebhookDeliveryRow): ClaimedDelivery {
  return {
    messageId: row.message_id,
    videoId: row.video_id,
    clientId: row.client_id,
    eventType: row.event_type,
    targetUrl: row.target_url,
    targetHost: row.target_host,
    attempts: row.attempts,
    attemptsInSeries: row.attempts - row.series_start_attempts,
    payload: row.payload,
    createdAt: row.created_at,
    leaseUntil: row.lease_until ?? 0,
  };
}

// ---------------------------------------------------------------------------------------------
// The dialect-specific part: claiming due deliveries under a lease.
// ---------------------------------------------------------------------------------------------

export type ClaimDueDeliveryRows = (
  db: Kysely<Database>,
  now: number,
  options: ClaimDeliveriesOptions,
) => Promise<WebhookDeliveryRow[]>;

/**
 * SQLite: one `UPDATE … WHERE message_id IN (SELECT …) RETURNING *`, atomic against every other writer of the file
 * (see `claimDueVideoRowsSqlite`). The subquery ranks due rows per receiver (`row_number() over (partition by
 * target_host)`), so a receiver with a thousand overdue events takes at most `perHostLimit` of the batch and the
 * rest goes to the others. (Postgres: the same ranking, `FOR UPDATE SKIP LOCKED` on the rows.)
 */
export const claimDueDeliveryRowsSqlite: ClaimDueDeliveryRows = async (db, now, options) => {
  const excluded = options.excludeHosts ?? [];
  const perHostLimit = Math.max(1, Math.floor(options.perHostLimit ?? options.limit));
  const due = db
    .selectFrom('webhook_deliveries')
    .select((eb) => [
      'message_id',
      'next_attempt_at',
      eb.fn.agg<number>('row_number').over((over) => over.partitionBy('target_host').orderBy('next_attempt_at').orderBy('message_id')).as('host_rank'),
    ])
    .where('status', 'in', claimableStatuses)
    .where('next_attempt_at', '<=', now)
    .where((free) => free.or([free('lease_until', 'is', null), free('lease_until', '<=', now)]))
    .$if(excluded.length > 0, (query) =>
      query.where((eb) => eb.or([eb('target_host', 'is', null), eb('target_host', 'not in', excluded)])),
    );
  const rows = await db
    .updateTable('webhook_deliveries')
    .set({ lease_until: now + options.leaseMs })
    .where('message_id', 'in', (eb) =>
      eb
        .selectFrom(due.as('due'))
        .select('due.message_id')
        .where('due.host_rank', '<=', perHostLimit)
        .orderBy('due.next_attempt_at')
        .limit(Math.floor(options.limit)),
    )
    .returningAll()
    .execute();
  return rows.sort((a, b) => (a.next_attempt_at ?? 0) - (b.next_attempt_at ?? 0) || a.message_id.localeCompare(b.message_id));
};

// ---------------------------------------------------------------------------------------------
// Dialect-neutral statements (each function accepts a transaction as well as the database).
// ---------------------------------------------------------------------------------------------

/**
 * Rewrites a video's webhook summary from its latest event (the most recently written outbox row; a terminal
 * event wins a tie with `video.processing`). Returns the updated video row.
 */
export async function refreshWebhookSummary(db: Kysely<Database>, videoId: string): Promise<VideoRow | undefined> {
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
    .set((eb) => ({
      webhook_json: latest === undefined ? null : JSON.stringify(webhookSummaryFromRow(latest)),
      version: eb('version', '+', 1),
    }))
    .where('id', '=', videoId)
    .returningAll()
    .executeTakeFirst();
}

export async function snapshotDeliveryPayload(db: Kysely<Database>, messageId: string, payload: string): Promise<string> {
  return db.transaction().execute(async (trx) => {
    await trx
      .updateTable('webhook_deliveries')
      .set({ payload })
      .where('message_id', '=', messageId)
      .where('payload', 'is', null)
      .execute();
    const row = await trx.selectFrom('webhook_deliveries').select('payload').where('message_id', '=', messageId).executeTakeFirst();
    return row?.payload ?? payload;
  });
}

export async function recordDeliveryAttempt(db: Kysely<Database>, result: DeliveryAttemptResult): Promise<VideoRow | undefined> {
  return db.transaction().execute(async (trx) => {
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
    return refreshWebhookSummary(trx, delivery.video_id);
  });
}

export async function releaseDelivery(db: Kysely<Database>, messageId: string, leaseUntil: number): Promise<void> {
  await db
    .updateTable('webhook_deliveries')
    .set({ lease_until: null })
    .where('message_id', '=', messageId)
    .where('lease_until', '=', leaseUntil)
    .execute();
}

export async function listDeliveryAttempts(db: Kysely<Database>, videoId: string, limit: number): Promise<DeliveryAttemptEntry[]> {
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
}

const terminalEventOf = (status: string): WebhookEventType | null =>
  status === 'completed' ? 'video.completed' : status === 'failed' ? 'video.failed' : null;

/** Redelivery; `toRecord` maps the updated video row (the store's row mapper). */
export async function redeliver(
  db: Kysely<Database>,
  videoId: string,
  now: number,
  toRecord: (row: VideoRow) => VideoRecord,
): Promise<RedeliverResult> {
  return db.transaction().execute(async (trx): Promise<RedeliverResult> => {
    const video = await trx.selectFrom('videos').select(['id', 'status']).where('id', '=', videoId).executeTakeFirst();
    if (video === undefined) return { kind: 'not_found' };
    const eventType = terminalEventOf(video.status);
    if (eventType === null) return { kind: 'not_terminal' };
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
    const row = await refreshWebhookSummary(trx, videoId);
    if (row === undefined) return { kind: 'not_found' };
    return { kind: 'enqueued', video: toRecord(row), messageId: delivery.message_id, eventType };
  });
}
