/** Every time source is injected so tests drive schedules in milliseconds. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Random source in [0, 1); injected so jitter is reproducible in tests. */
export type Random = () => number;

export const toIso = (ms: number): string => new Date(ms).toISOString();
