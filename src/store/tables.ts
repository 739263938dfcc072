import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';

import type { VideoStatus, WebhookEventType } from '../../schemas/video.js';
import type { ErasureReason, IdempotencyState, WebhookDeliveryStatus } from './records.js';

/**
 * The Kysely view of the database: one interface per table, column names as stored (snake_case).
 * Times are epoch milliseconds (integers).
 */
export interface Database {
  videos: VideosTable;
  webhook_deliveries: WebhookDeliveriesTable;
  delivery_attempts: DeliveryAttemptsTable;
  idempotency_keys: IdempotencyKeysTable;
  video_tombstones: VideoTombstonesTable;
  store_heartbeat: StoreHeartbeatTable;
}

/**
 * A JSON column (`*_json`): written as JSON text; read back as text (SQLite) or already parsed (a jsonb dialect).
 * Only the row mappers' `JsonCodec` (kysely/row-mappers.ts) reads or writes one.
 */
export type JsonColumn = ColumnType<unknown, string, string>;
export type NullableJsonColumn = ColumnType<unknown, string | null, string | null>;

export interface VideosTable {
  id: string;
  client_id: string;
  /** Null while `submitting` (the upstream has not answered yet), and forever when that create was interrupted. */
  upstream_id: string | null;
  /** `submitting`: the create's intent is recorded and the upstream is being asked (shown as `queued`). */
  status: StoredVideoStatus;
  upstream_state: string | null;
  /** `VideoRequest` as JSON. */
  request_json: JsonColumn;
  /** `VideoResult` as JSON, once completed. */
  result_json: NullableJsonColumn;
  /** `VideoFailure` as JSON, once failed. */
  failure_json: NullableJsonColumn;
  estimated_wait_seconds: number | null;
  created_at: number;
  updated_at: number;
  completed_at: number | null;
  next_poll_at: number | null;
  poll_attempts: number;
  not_found_since: number | null;
  lease_until: number | null;
  /** Row revision, bumped on every update. */
  version: number;
  /**
   * The delivery state of the video's latest webhook event, copied from its outbox row in the transactions that
   * change it, so every read of a video carries it without a join; all null while the video has no event.
   */
  webhook_status: WebhookDeliveryStatus | null;
  webhook_attempts: number | null;
  webhook_last_attempt_at: number | null;
  webhook_next_attempt_at: number | null;
  webhook_last_response_status: number | null;
}

/** The transactional outbox: one row per webhook event, written with the state change that caused it. */
export interface WebhookDeliveriesTable {
  /** `msg_…`, the `webhook-id` header: stable across retries and redeliveries. */
  message_id: string;
  video_id: string;
  client_id: string;
  event_type: WebhookEventType;
  status: WebhookDeliveryStatus;
  attempts: number;
  next_attempt_at: number | null;
  lease_until: number | null;
  last_attempt_at: number | null;
  last_response_status: number | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
  /** The exact request body, snapshotted at the first attempt (null before it). */
  payload: string | null;
  /** The video's callback URL (immutable), and its `host[:port]` for the per-host concurrency cap. */
  target_url: string | null;
  target_host: string | null;
  /** `attempts` when the current retry series began; a redelivery starts a new series. */
  series_start_attempts: Generated<number>;
}

/** One row per HTTP attempt, for `GET /videos/{id}/deliveries`. */
export interface DeliveryAttemptsTable {
  id: Generated<number>;
  message_id: string;
  video_id: string;
  event_type: WebhookEventType;
  attempt: number;
  at: number;
  duration_ms: number;
  response_status: number | null;
  error: string | null;
  response_excerpt: string | null;
}

export interface IdempotencyKeysTable {
  client_id: string;
  key: string;
  /** Hash of the request body, to tell a replay from a reused key. */
  fingerprint: string;
  state: IdempotencyState;
  response_status: number | null;
  response_body: string | null;
  response_headers_json: NullableJsonColumn;
  created_at: number;
  expires_at: number;
  /**
   * The video the key's request recorded before calling the upstream (and whose 202 it stores). A key linked to a
   * video may have started a paid generation: it is never taken over by a retry, only answered with that video.
   */
  video_id: string | null;
  /** When that video was erased; its stored answer and fingerprint are gone then. */
  erased_at: number | null;
}

/** One row per erased video: only id, owner and times (DESIGN §2.4). */
export interface VideoTombstonesTable {
  id: string;
  client_id: string;
  created_at: number;
  updated_at: number;
  completed_at: number | null;
  deleted_at: number;
  /** The video's last row version plus one. */
  version: number;
  reason: ErasureReason;
}

/** One row per writer that proved the store accepts writes (`/readyz`). */
export interface StoreHeartbeatTable {
  id: string;
  beat_at: number;
}

/** A video row's status: the public lifecycle, plus `submitting` between the recorded intent and the upstream's answer. */
export type StoredVideoStatus = VideoStatus | 'submitting';

export type VideoRow = Selectable<VideosTable>;
export type NewVideoRow = Insertable<VideosTable>;
export type WebhookDeliveryRow = Selectable<WebhookDeliveriesTable>;
export type NewWebhookDeliveryRow = Insertable<WebhookDeliveriesTable>;
export type DeliveryAttemptRow = Selectable<DeliveryAttemptsTable>;
export type IdempotencyKeyRow = Selectable<IdempotencyKeysTable>;
export type NewIdempotencyKeyRow = Insertable<IdempotencyKeysTable>;
export type VideoTombstoneRow = Selectable<VideoTombstonesTable>;
