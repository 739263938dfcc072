import type { Kysely } from 'kysely';

import type { Database, VideoRow } from '../tables.js';
import type { StoreDialect } from './dialect.js';

/** Channel of video changes; payload `{"id":"vid_…","version":N}` (never content). */
export const VIDEO_CHANGED_CHANNEL = 'gateway_video_changed';
/** Channel that wakes dispatchers when outbox rows become due; empty payload. */
export const DELIVERIES_DUE_CHANNEL = 'gateway_deliveries_due';

/**
 * THE announcement of a committed video change (status, result, webhook state, schedule, delete): every repository
 * method that writes a video row calls it, inside the transaction of the write, with the rows as written (for a
 * delete, the row's last id and version + 1). On Postgres it is a `NOTIFY` delivered only if that transaction commits;
 * SQLite has no other process to tell (a no-op). Lease-only writes (claims) are not changes a reader can see.
 */
export async function videoChanged(
  db: Kysely<Database>,
  dialect: StoreDialect,
  rows: ReadonlyArray<Pick<VideoRow, 'id' | 'version'> | undefined>,
): Promise<void> {
  const changes = rows.filter((row) => row !== undefined).map((row) => ({ id: row.id, version: row.version }));
  if (changes.length > 0)
    await dialect.notify(
      db,
      VIDEO_CHANGED_CHANNEL,
      changes.map((change) => JSON.stringify(change)),
    );
}

/** New (or newly due) outbox rows: wakes the dispatchers of every replica. Inside the writing transaction. */
export async function deliveriesDue(db: Kysely<Database>, dialect: StoreDialect): Promise<void> {
  await dialect.notify(db, DELIVERIES_DUE_CHANNEL, ['']);
}
