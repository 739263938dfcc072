/** Cancels a scheduled callback; calling it twice is harmless. */
export type CancelTimer = () => void;

/**
 * Timer source, injected like the clock so tests drive long-polls, keep-alives and pruning in
 * milliseconds instead of waiting for real seconds.
 */
export interface Timers {
  setTimeout(callback: () => void, ms: number): CancelTimer;
  setInterval(callback: () => void, ms: number): CancelTimer;
}

export const systemTimers: Timers = {
  setTimeout(callback, ms) {
    const handle = setTimeout(callback, ms);
    return () => clearTimeout(handle);
  },
  setInterval(callback, ms) {
    const handle = setInterval(callback, ms);
    // Background ticks (pruning, keep-alives) never hold the process open on their own.
    handle.unref();
    return () => clearInterval(handle);
  },
};
