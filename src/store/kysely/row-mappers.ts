import type { VideoFailure, VideoResult } from '../../../schemas/video.js';
import type {
  ClaimedDelivery,
  IdempotencyRecord,
  NewVideo,
  OutboxEvent,
  StoredResponse,
  VideoRecord,
  VideoRequest,
  WebhookDeliveryState,
} from '../records.js';
import type { IdempotencyKeyRow, NewVideoRow, NewWebhookDeliveryRow, VideoRow, WebhookDeliveryRow } from '../tables.js';
import type { JsonCodec } from './dialect.js';

/** Rows ↔ records. Pure; the only place JSON columns are read or written, through the dialect's codec. */
export interface RowMappers {
  videoFromRow: (row: VideoRow) => VideoRecord;
  newVideoRow(video: NewVideo): NewVideoRow;
  idempotencyRecordFromRow(row: IdempotencyKeyRow): IdempotencyRecord;
  /** JSON text for a JSON column; null stays null. */
  toJson(value: unknown): string;
  toNullableJson(value: unknown): string | null;
}

export function createRowMappers(json: JsonCodec): RowMappers {
  // JSON columns are written only through these mappers, from typed values, so reading them back is a cast,
  // not a validation.
  const readJson = <T>(column: unknown): T => json.read(column) as T;
  const readNullableJson = <T>(column: unknown): T | null => (column === null ? null : readJson<T>(column));
  const toJson = (value: unknown): string => JSON.stringify(value);
  const toNullableJson = (value: unknown): string | null => (value === null || value === undefined ? null : JSON.stringify(value));

  return {
    videoFromRow(row) {
      const webhook = webhookStateFromRow(row);
      const submitting = row.status === 'submitting';
      return {
        id: row.id,
        clientId: row.client_id,
        // Empty while the upstream has not answered (or never did, for an interrupted create).
        upstreamId: row.upstream_id ?? '',
        // A recorded intent reads as `queued` everywhere outside the store (DESIGN §2.2 knows four statuses).
        status: row.status === 'submitting' ? 'queued' : row.status,
        upstreamState: row.upstream_state,
        request: readJson<VideoRequest>(row.request_json),
        estimatedWaitSeconds: row.estimated_wait_seconds,
        result: readNullableJson<VideoResult>(row.result_json),
        failure: readNullableJson<VideoFailure>(row.failure_json),
        createdAt: row.created_at,
        updatedAt: row.updated_at,
        completedAt: row.completed_at,
        nextPollAt: row.next_poll_at,
        pollAttempts: row.poll_attempts,
        notFoundSince: row.not_found_since,
        leaseUntil: row.lease_until,
        version: row.version,
        // Absent (not null) while the video has no webhook event, so records compare equal to what was inserted.
        ...(webhook === null ? {} : { webhook }),
        ...(submitting ? { submitting: true as const } : {}),
      };
    },

    newVideoRow(video) {
      return {
        id: video.id,
        client_id: video.clientId,
        upstream_id: video.upstreamId,
        status: video.status,
        upstream_state: video.upstreamState,
        request_json: toJson(video.request),
        result_json: toNullableJson(video.result),
        failure_json: toNullableJson(video.failure),
        estimated_wait_seconds: video.estimatedWaitSeconds,
        created_at: video.createdAt,
        updated_at: video.createdAt,
        completed_at: null,
        next_poll_at: video.nextPollAt,
        poll_attempts: 0,
        not_found_since: null,
        lease_until: null,
        version: 1,
        webhook_status: null,
        webhook_attempts: null,
        webhook_last_attempt_at: null,
        webhook_next_attempt_at: null,
        webhook_last_response_status: null,
      };
    },

    idempotencyRecordFromRow(row) {
      const response: StoredResponse | null =
        row.state === 'completed' && row.response_status !== null && row.response_body !== null
          ? {
              status: row.response_status,
              body: row.response_body,
              headers: readNullableJson<Record<string, string>>(row.response_headers_json) ?? {},
            }
          : null;
      return {
        clientId: row.client_id,
        key: row.key,
        fingerprint: row.fingerprint,
        state: row.state,
        response,
        createdAt: row.created_at,
        expiresAt: row.expires_at,
        erasedAt: row.erased_at,
        videoId: row.video_id,
      };
    },

    toJson,
    toNullableJson,
  };
}

function webhookStateFromRow(row: VideoRow): WebhookDeliveryState | null {
  if (row.webhook_status === null) return null;
  return {
    status: row.webhook_status,
    attempts: row.webhook_attempts ?? 0,
    lastAttemptAt: row.webhook_last_attempt_at,
    nextAttemptAt: row.webhook_next_attempt_at,
    lastResponseStatus: row.webhook_last_response_status,
  };
}

/** The video columns that carry the state of its latest outbox row (undefined: the video has no event). */
export function webhookColumns(
  latest: Pick<WebhookDeliveryRow, 'status' | 'attempts' | 'last_attempt_at' | 'next_attempt_at' | 'last_response_status'> | undefined,
): Pick<
  VideoRow,
  'webhook_status' | 'webhook_attempts' | 'webhook_last_attempt_at' | 'webhook_next_attempt_at' | 'webhook_last_response_status'
> {
  return {
    webhook_status: latest?.status ?? null,
    webhook_attempts: latest?.attempts ?? null,
    webhook_last_attempt_at: latest?.last_attempt_at ?? null,
    webhook_next_attempt_at: latest?.next_attempt_at ?? null,
    webhook_last_response_status: latest?.last_response_status ?? null,
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

/** An outbox row for one event of a video, due immediately; its target is the video's callback URL. */
export function newDeliveryRow(
  video: Pick<VideoRecord, 'id' | 'clientId' | 'request'>,
  event: OutboxEvent,
  now: number,
): NewWebhookDeliveryRow {
  const { callbackUrl } = video.request;
  return {
    message_id: event.messageId,
    video_id: video.id,
    client_id: video.clientId,
    event_type: event.eventType,
    status: 'pending',
    attempts: 0,
    next_attempt_at: now,
    lease_until: null,
    last_attempt_at: null,
    last_response_status: null,
    last_error: null,
    created_at: now,
    updated_at: now,
    payload: null,
    target_url: callbackUrl,
    target_host: callbackUrl === null ? null : new URL(callbackUrl).host,
  };
}
