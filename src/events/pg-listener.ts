import { LRUCache } from 'lru-cache';
import pg from 'pg';
import { Counter, Gauge, type Registry } from 'prom-client';

import type { Random } from '../clock.js';
import type { Logger } from '../lib/logger.js';
import type { VideoRepository } from '../store/repositories.js';
import type { CancelTimer, Timers } from '../timers.js';
import type { EventBus } from './bus.js';
import { defaultReconnectBackoff, type ReconnectBackoff, reconnectDelayMs } from './reconnect-backoff.js';

/*
 * Replicas on one Postgres (DESIGN §4.5): the store announces every committed change of a video with
 * `NOTIFY gateway_video_changed, '{"id":…,"version":…}'` and every new due delivery with
 * `NOTIFY gateway_deliveries_due`. Each replica LISTENs on one dedicated connection (outside the pool) and feeds
 * its in-process bus, so waiters, cached bodies and the webhook dispatcher react to changes made on any replica.
 * A notification carries no content: the video is re-read from the store, and only when someone here waits on it.
 */

export const videoChangedChannel = 'gateway_video_changed';
export const deliveriesDueChannel = 'gateway_deliveries_due';

export type ChangeNotification =
  | { kind: 'video_changed'; id: string; version: number }
  | { kind: 'deliveries_due' }
  | { kind: 'malformed'; channel: string }
  | { kind: 'other' };

const maxIdLength = 200;

/** A notification as received → what it means; anything unexpected on our channels is `malformed`. Pure. */
export function parseNotification(channel: string, payload: string | undefined): ChangeNotification {
  if (channel === deliveriesDueChannel) return { kind: 'deliveries_due' };
  if (channel !== videoChangedChannel) return { kind: 'other' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload ?? '');
  } catch {
    return { kind: 'malformed', channel };
  }
  if (typeof parsed !== 'object' || parsed === null) return { kind: 'malformed', channel };
  const { id, version } = parsed as { id?: unknown; version?: unknown };
  if (typeof id !== 'string' || id === '' || id.length > maxIdLength) return { kind: 'malformed', channel };
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) return { kind: 'malformed', channel };
  return { kind: 'video_changed', id, version };
}

export interface PgChangeListenerOptions {
  /** The store's `DATABASE_URL`. */
  connectionString: string;
  /** Shown in `pg_stat_activity`, so operators (and tests) can find this connection. */
  applicationName?: string;
  bus: EventBus;
  videos: Pick<VideoRepository, 'get' | 'tombstone'>;
  /** The rendered-body cache of this replica. */
  cache: { evictCached(id: string, version: number): void; evictAllCached(): void };
  /** Claims due deliveries now (the webhook dispatcher's `wake`). */
  wakeDispatcher: () => void;
  timers: Timers;
  random: Random;
  logger: Logger;
  /** Where the feed's metrics go (the gateway's registry); none when omitted. */
  registry?: Registry;
  backoff?: ReconnectBackoff;
  /** Versions remembered per video, to skip announcements of changes this replica already published. */
  maxTrackedVideos?: number;
}

export interface PgChangeListener {
  /** Connects and LISTENs; a failure is retried in the background (it never rejects). */
  start(): Promise<void>;
  /** Whether the LISTEN connection is up. */
  readonly connected: boolean;
  readonly applicationName: string;
  close(): Promise<void>;
}

export function createPgChangeListener(options: PgChangeListenerOptions): PgChangeListener {
  const { bus, videos, cache, timers, random, logger } = options;
  const applicationName = options.applicationName ?? 'video-gateway-listen';
  const backoff = options.backoff ?? defaultReconnectBackoff;
  const registers = options.registry === undefined ? [] : [options.registry];
  const malformedTotal = new Counter({
    name: 'gateway_change_feed_malformed_total',
    help: 'Notifications on the gateway channels whose payload could not be read (ignored), by channel.',
    labelNames: ['channel'] as const,
    registers,
  });
  const reconnectsTotal = new Counter({
    name: 'gateway_change_feed_reconnects_total',
    help: 'Times the LISTEN connection came back after a loss (each empties the cache and wakes every waiter).',
    registers,
  });
  const connectedGauge = new Gauge({
    name: 'gateway_change_feed_connected',
    help: 'Whether the LISTEN connection to Postgres is up (1) or being re-established (0).',
    registers,
  });

  /** The newest version of each video this replica has seen (published here or announced). */
  const seen = new LRUCache<string, number>({ max: options.maxTrackedVideos ?? 10_000 });
  const remember = (id: string, version: number): void => {
    if ((seen.get(id) ?? 0) < version) seen.set(id, version);
  };
  const stopRemembering = bus.subscribeAll((change) => {
    const changed = change.video ?? change.deleted;
    remember(changed.id, changed.version);
  });

  let client: pg.Client | null = null;
  let closing = false;
  /** Failed attempts since the connection was last up. */
  let attempts = 0;
  /** A connection was lost (or never made): the next one must re-sync this replica. */
  let missedChanges = false;
  let cancelRetry: CancelTimer | null = null;
  let loggedMalformed = false;

  /** Videos being re-read → whether another announcement came in meanwhile (read again). */
  const rereading = new Map<string, boolean>();
  const reread = (id: string): void => {
    if (rereading.has(id)) {
      rereading.set(id, true);
      return;
    }
    rereading.set(id, false);
    void (async () => {
      try {
        for (;;) {
          const record = await videos.get(id);
          if (record !== undefined) bus.publish({ video: record });
          else {
            // Erased on another replica: its waiters here end as they would on the replica that erased it.
            const tombstone = await videos.tombstone(id);
            if (tombstone !== undefined) bus.publish({ deleted: tombstone });
          }
          if (rereading.get(id) !== true) break;
          rereading.set(id, false);
        }
      } catch (error) {
        logger.warn({ err: error, videoId: id }, 'change feed: re-reading a changed video failed; its waiters see it at their next change');
      } finally {
        rereading.delete(id);
      }
    })();
  };

  const onVideoChanged = (id: string, version: number): void => {
    if ((seen.get(id) ?? 0) >= version) return; // published on this replica already (or an older announcement)
    remember(id, version);
    cache.evictCached(id, version);
    if (bus.listenerCount(id) > 0) reread(id);
  };

  const onNotification = (message: pg.Notification): void => {
    const notification = parseNotification(message.channel, message.payload);
    switch (notification.kind) {
      case 'video_changed':
        onVideoChanged(notification.id, notification.version);
        break;
      case 'deliveries_due':
        options.wakeDispatcher();
        break;
      case 'malformed':
        malformedTotal.inc({ channel: notification.channel });
        if (!loggedMalformed) {
          loggedMalformed = true;
          logger.debug(
            { channel: notification.channel, payloadLength: message.payload?.length ?? 0 },
            'change feed: ignored a notification with an unreadable payload (counted in gateway_change_feed_malformed_total; logged once)',
          );
        }
        break;
      case 'other':
        break;
    }
  };

  /** After a gap in the feed: nothing cached can be trusted, and every waiter re-reads its video. */
  const resync = (): void => {
    reconnectsTotal.inc();
    cache.evictAllCached();
    options.wakeDispatcher();
    for (const id of bus.watchedVideoIds()) reread(id);
  };

  const scheduleRetry = (): void => {
    if (closing || cancelRetry !== null) return;
    attempts += 1;
    const delayMs = reconnectDelayMs(attempts, random, backoff);
    cancelRetry = timers.setTimeout(() => {
      cancelRetry = null;
      void connect();
    }, delayMs);
  };

  const connect = async (): Promise<void> => {
    if (closing) return;
    const next = new pg.Client({ connectionString: options.connectionString, application_name: applicationName, keepAlive: true });
    let lost = false;
    const onLost = (error?: unknown): void => {
      if (lost) return;
      lost = true;
      next.removeListener('notification', onNotification);
      void next.end().catch(() => {});
      if (client === next) {
        client = null;
        connectedGauge.set(0);
        if (!closing)
          logger.warn({ err: error }, 'change feed: LISTEN connection lost; reconnecting (cache emptied and waiters woken once back)');
      } else if (!closing) {
        logger.debug({ err: error, attempt: attempts + 1 }, 'change feed: LISTEN connection attempt failed');
      }
      missedChanges = true;
      scheduleRetry();
    };
    next.on('error', onLost);
    next.on('end', () => onLost());
    next.on('notification', onNotification);
    try {
      await next.connect();
      await next.query(`LISTEN ${videoChangedChannel}; LISTEN ${deliveriesDueChannel}`);
    } catch (error) {
      onLost(error);
      return;
    }
    if (lost) return;
    if (closing) {
      await next.end().catch(() => {});
      return;
    }
    client = next;
    connectedGauge.set(1);
    if (attempts > 0 || missedChanges) logger.info({ attempts }, 'change feed: LISTEN connection back');
    attempts = 0;
    if (missedChanges) {
      missedChanges = false;
      resync();
    }
  };

  return {
    start: connect,
    get connected() {
      return client !== null;
    },
    applicationName,
    async close() {
      closing = true;
      cancelRetry?.();
      cancelRetry = null;
      stopRemembering();
      const current = client;
      client = null;
      connectedGauge.set(0);
      if (current !== null) await current.end().catch(() => {});
    },
  };
}
