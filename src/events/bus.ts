import type { VideoRecord, VideoTombstone } from '../store/records.js';

/**
 * A stored change of a video, published after its transaction commits: a new state (status, result, webhook
 * summary) in `video`, or its erasure (DELETE, retention) in `deleted`, after which the video is gone for good.
 */
export type VideoChanged = { video: VideoRecord; deleted?: never } | { deleted: VideoTombstone; video?: never };

export type VideoListener = (change: VideoChanged) => void;

/** The id of the video a change is about. */
export const changedVideoId = (change: VideoChanged): string => (change.deleted === undefined ? change.video.id : change.deleted.id);

/**
 * How state changes reach waiters (long-poll, SSE, cache invalidation). In-process now; a Postgres
 * LISTEN/NOTIFY implementation of the same interface serves replicas sharing a database.
 */
export interface EventBus {
  publish(change: VideoChanged): void;
  /** Returns the unsubscribe function; callers must call it on disconnect. */
  subscribe(videoId: string, listener: VideoListener): () => void;
  /** Listeners of every video (cache invalidation, metrics). */
  subscribeAll(listener: VideoListener): () => void;
  listenerCount(videoId?: string): number;
  /** The videos someone waits on right now (long-poll, SSE): re-read after changes may have been missed. */
  watchedVideoIds(): string[];
}

export function createInProcessBus(): EventBus {
  const byVideo = new Map<string, Set<VideoListener>>();
  const everyVideo = new Set<VideoListener>();

  const notify = (listener: VideoListener, change: VideoChanged): void => {
    // One failing listener must not stop the others nor the publisher's transaction flow.
    try {
      listener(change);
    } catch {
      /* listeners own their errors */
    }
  };

  return {
    publish(change) {
      for (const listener of everyVideo) notify(listener, change);
      const listeners = byVideo.get(changedVideoId(change));
      if (listeners === undefined) return;
      for (const listener of [...listeners]) notify(listener, change);
    },
    subscribe(videoId, listener) {
      let listeners = byVideo.get(videoId);
      if (listeners === undefined) {
        listeners = new Set();
        byVideo.set(videoId, listeners);
      }
      listeners.add(listener);
      return () => {
        const current = byVideo.get(videoId);
        if (current === undefined) return;
        current.delete(listener);
        if (current.size === 0) byVideo.delete(videoId);
      };
    },
    subscribeAll(listener) {
      everyVideo.add(listener);
      return () => everyVideo.delete(listener);
    },
    listenerCount(videoId) {
      if (videoId !== undefined) return byVideo.get(videoId)?.size ?? 0;
      let count = everyVideo.size;
      for (const listeners of byVideo.values()) count += listeners.size;
      return count;
    },
    watchedVideoIds: () => [...byVideo.keys()],
  };
}
