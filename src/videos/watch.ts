import type { Caller } from '../auth/caller.js';
import { VideoNotFound } from '../errors.js';
import type { EventBus, VideoChanged } from '../events/bus.js';
import type { VideoRecord, VideoTombstone } from '../store/records.js';
import type { CancelTimer, Timers } from '../timers.js';
import { ifNoneMatchHits, type RenderedVideo } from './present.js';
import type { VideoService } from './service.js';

/*
 * Long-poll (`GET /videos/{id}?wait=N`) and SSE (`GET /videos/{id}/events`) on the event bus the store's state
 * changes are published to — the same changes the webhook outbox is written with. Waiting never calls the
 * upstream; each waiter holds one bus listener and one timer, both released when it ends or the client leaves.
 */

const defaultKeepAliveMs = 15_000;

export interface VideoWatchOptions {
  bus: EventBus;
  videos: Pick<VideoService, 'read' | 'present'>;
  timers: Timers;
  /** SSE keep-alive comment period (DESIGN §2.4: 15 s). */
  keepAliveMs?: number;
}

export interface WaitRequest {
  /** Longest wait, in ms. */
  waitMs: number;
  /** Aborts when the client disconnects: the waiter is released at once. */
  signal: AbortSignal;
  /** The client's `If-None-Match`: when its copy is already stale there is nothing to wait for. */
  ifNoneMatch?: string | undefined;
}

/** What a stream tells of an erased video: which, and when. */
export type ErasedVideo = Pick<VideoTombstone, 'id' | 'deletedAt'>;

export interface StatusStreamHandlers {
  /** A status change; the stream has stopped itself when `rendered.terminal`. */
  onStatus(rendered: RenderedVideo): void;
  onKeepAlive(): void;
  /** The video was erased (DELETE, retention): the stream has stopped itself; send a last event and end. */
  onDeleted(erased: ErasedVideo): void;
  /** The gateway is shutting down: end the response (clients reconnect and get the current state). */
  onShutdown(): void;
}

export interface StatusStream {
  /** The video as it stands now, sent first. */
  initial: RenderedVideo;
  /** Delivers changes from now on (including any that arrived since `initial` was read). */
  start(handlers: StatusStreamHandlers): void;
  /** Releases the listener and the keep-alive timer; idempotent. */
  stop: () => void;
}

export interface VideoWatch {
  /**
   * Resolves as soon as the video's status changes or it is terminal, else after `waitMs` with its current
   * state. Not found (or another client's) is `VideoNotFound`, as for a plain read, and so is a video erased
   * while it is waited on (the wait ends at once).
   */
  waitForChange(caller: Caller, id: string, request: WaitRequest): Promise<RenderedVideo>;
  /** The current video, then every status change until it is terminal or erased. */
  watch(caller: Caller, id: string): Promise<StatusStream>;
  /** Shutdown: answers every long-poll now and ends every stream, so the server can close without waiting. */
  closeAll(): void;
}

/**
 * Subscribes before reading, so a change committed between the read and the wait cannot be missed (lost
 * wake-up); keeps only the latest change seen meanwhile, so a slow start holds one record, not a queue.
 */
async function subscribeThenRead(
  bus: EventBus,
  videos: VideoWatchOptions['videos'],
  caller: Caller,
  id: string,
): Promise<{ initial: RenderedVideo; unsubscribe: () => void; take(listener: (change: VideoChanged) => void): void }> {
  let pending: VideoChanged | null = null;
  let deliver: ((change: VideoChanged) => void) | null = null;
  const unsubscribe = bus.subscribe(id, (change) => {
    if (deliver !== null) deliver(change);
    else pending = change; // an erasure is the last change a video ever has
  });
  let initial: RenderedVideo;
  try {
    initial = await videos.read(caller, id);
  } catch (error) {
    unsubscribe();
    throw error;
  }
  return {
    initial,
    unsubscribe,
    take(listener) {
      deliver = listener;
      const missed: VideoChanged | null = pending;
      pending = null;
      if (missed !== null) listener(missed);
    },
  };
}

export function createVideoWatch(options: VideoWatchOptions): VideoWatch {
  const { bus, videos, timers } = options;
  const keepAliveMs = options.keepAliveMs ?? defaultKeepAliveMs;
  // Every waiter on a video receives the same record object: render it once for all of them.
  const renderedByRecord = new WeakMap<VideoRecord, RenderedVideo>();
  const present = (record: VideoRecord): RenderedVideo => {
    let rendered = renderedByRecord.get(record);
    if (rendered === undefined) {
      rendered = videos.present(record);
      renderedByRecord.set(record, rendered);
    }
    return rendered;
  };
  /** How to end each open waiter at shutdown. */
  const open = new Set<() => void>();

  return {
    async waitForChange(caller, id, { waitMs, signal, ifNoneMatch }) {
      const subscription = await subscribeThenRead(bus, videos, caller, id);
      const { initial } = subscription;
      const staleCopy = ifNoneMatch !== undefined && !ifNoneMatchHits(ifNoneMatch, initial.etag);
      if (initial.terminal || staleCopy || signal.aborted) {
        subscription.unsubscribe();
        return initial;
      }
      return new Promise<RenderedVideo>((resolve, reject) => {
        let latest = initial;
        let erased = false;
        let cancelTimer: CancelTimer = () => {};
        const finish = (): void => {
          cancelTimer();
          subscription.unsubscribe();
          signal.removeEventListener('abort', finish);
          open.delete(finish);
          if (erased) reject(new VideoNotFound());
          else resolve(latest);
        };
        open.add(finish);
        signal.addEventListener('abort', finish, { once: true });
        cancelTimer = timers.setTimeout(finish, waitMs);
        subscription.take(({ video: record }) => {
          if (record === undefined) {
            erased = true;
            finish();
            return;
          }
          // Other changes (a refreshed URL, the webhook summary) update what is answered but do not end the wait.
          latest = present(record);
          if (record.status !== initial.video.status) finish();
        });
      });
    },

    async watch(caller, id) {
      const subscription = await subscribeThenRead(bus, videos, caller, id);
      let stopKeepAlive: CancelTimer = () => {};
      let shutdown: (() => void) | null = null;
      let stopped = false;
      const stop = (): void => {
        if (stopped) return;
        stopped = true;
        stopKeepAlive();
        subscription.unsubscribe();
        if (shutdown !== null) open.delete(shutdown);
      };
      if (subscription.initial.terminal) stop();
      return {
        initial: subscription.initial,
        stop,
        start(handlers) {
          if (stopped) return;
          let lastStatus = subscription.initial.video.status;
          shutdown = () => {
            stop();
            handlers.onShutdown();
          };
          open.add(shutdown);
          stopKeepAlive = timers.setInterval(() => handlers.onKeepAlive(), keepAliveMs);
          subscription.take((change) => {
            if (stopped) return;
            if (change.deleted !== undefined) {
              stop();
              handlers.onDeleted(change.deleted);
              return;
            }
            const record = change.video;
            if (record.status === lastStatus) return;
            lastStatus = record.status;
            const rendered = present(record);
            if (rendered.terminal) stop();
            handlers.onStatus(rendered);
          });
        },
      };
    },

    closeAll() {
      for (const end of [...open]) end();
    },
  };
}
