import { LRUCache } from 'lru-cache';

import { changedVideoId, type EventBus } from '../events/bus.js';
import type { RenderedVideo } from './present.js';

/**
 * Pre-serialized bodies of terminal videos (a running one changes under the poller), dropped on every published
 * change of their video (status, refreshed URL, webhook state, erasure).
 */
export interface RenderedVideoCache {
  /** Counts as a hit or a miss. */
  get(id: string): RenderedVideo | undefined;
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
    get(id) {
      const rendered = cache.get(id);
      if (rendered === undefined) misses += 1;
      else hits += 1;
      return rendered;
    },
    mark: () => changesSeen,
    changedSince: (mark) => changesSeen !== mark,
    set(rendered) {
      if (rendered.terminal) cache.set(rendered.video.id, rendered);
    },
    stats: () => ({ size: cache.size, hits, misses }),
  };
}
