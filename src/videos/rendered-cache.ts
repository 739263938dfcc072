import { LRUCache } from 'lru-cache';

import { changedVideoId, type EventBus } from '../events/bus.js';
import type { RenderedVideo } from './present.js';

/**
 * Pre-serialized bodies of terminal videos (a running one changes under the poller), dropped on every published
 * change of their video (status, refreshed URL, webhook state, erasure).
 */
export interface RenderedVideoCache {
  /** Counts nothing: a lookup is counted by `countLookup`, once the caller is known to own the video. */
  get(id: string): RenderedVideo | undefined;
  /**
   * Counts a lookup of the caller's own video. Another tenant's id is never counted, hit or not, so the metrics
   * cannot tell a tenant whether someone else's id exists.
   */
  countLookup(hit: boolean): void;
  /** Taken before reading the store; see `changedSince`. */
  mark(): number;
  /**
   * Whether a change was published since `mark`. A read that began before a change may hold the older row: it
   * answers with it but must not cache it, or the cache would keep serving the older body (its invalidation already
   * ran) until the video changes again.
   */
  changedSince(mark: number): boolean;
  /** Keeps a terminal video's body; others are ignored. */
  set(rendered: RenderedVideo): void;
  /**
   * Drops a video's body because it changed elsewhere (another replica), unless the body is already of `version`
   * or newer; counts as a change for `changedSince` (a read in flight may hold the older row).
   */
  forget(id: string, version: number): void;
  /** Drops every body: changes may have been missed (a lost change feed). */
  forgetAll(): void;
  stats(): { size: number; hits: number; misses: number };
}

export function createRenderedVideoCache(options: { bus: EventBus; maxEntries: number }): RenderedVideoCache {
  const cache = new LRUCache<string, RenderedVideo>({ max: options.maxEntries });
  let hits = 0;
  let misses = 0;
  /** Counts published changes. */
  let changesSeen = 0;
  options.bus.subscribeAll((change) => {
    changesSeen += 1;
    cache.delete(changedVideoId(change));
  });

  return {
    get: (id) => cache.get(id),
    countLookup(hit) {
      if (hit) hits += 1;
      else misses += 1;
    },
    mark: () => changesSeen,
    changedSince: (mark) => changesSeen !== mark,
    set(rendered) {
      if (rendered.terminal) cache.set(rendered.video.id, rendered);
    },
    forget(id, version) {
      changesSeen += 1;
      const held = cache.peek(id);
      if (held !== undefined && held.version < version) cache.delete(id);
    },
    forgetAll() {
      changesSeen += 1;
      cache.clear();
    },
    stats: () => ({ size: cache.size, hits, misses }),
  };
}
