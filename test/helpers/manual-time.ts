import type { Clock } from '../../src/clock.js';
import type { CancelTimer, Timers } from '../../src/timers.js';

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  constructor(private current = Date.parse('2026-01-01T00:00:00.000Z')) {}
  now(): number {
    return this.current;
  }
  advance(ms: number): void {
    this.current += ms;
  }
  set(ms: number): void {
    this.current = ms;
  }
}

interface ManualTimer {
  due: number;
  callback: () => void;
  /** Repeat period for intervals; null for one-shot timers. */
  every: number | null;
}

/** Timers on a ManualClock: `advance(ms)` moves the clock and fires what falls due, in order. */
export class ManualTimers implements Timers {
  readonly #timers = new Map<number, ManualTimer>();
  #nextId = 0;

  constructor(private readonly clock: ManualClock) {}

  setTimeout(callback: () => void, ms: number): CancelTimer {
    return this.#add({ due: this.clock.now() + Math.max(0, ms), callback, every: null });
  }

  setInterval(callback: () => void, ms: number): CancelTimer {
    const every = Math.max(1, ms);
    return this.#add({ due: this.clock.now() + every, callback, every });
  }

  /** Moves the clock forward by `ms`, firing each timer at its due time (earliest first). */
  advance(ms: number): void {
    const end = this.clock.now() + ms;
    for (;;) {
      const next = this.#earliestDue(end);
      if (next === undefined) break;
      const [id, timer] = next;
      if (timer.due > this.clock.now()) this.clock.set(timer.due);
      if (timer.every === null) this.#timers.delete(id);
      else timer.due += timer.every;
      timer.callback();
    }
    if (end > this.clock.now()) this.clock.set(end);
  }

  /** Timers still scheduled (a finished long-poll or closed stream must leave none behind). */
  pending(): number {
    return this.#timers.size;
  }

  #add(timer: ManualTimer): CancelTimer {
    const id = this.#nextId++;
    this.#timers.set(id, timer);
    return () => {
      this.#timers.delete(id);
    };
  }

  #earliestDue(limit: number): [number, ManualTimer] | undefined {
    let earliest: [number, ManualTimer] | undefined;
    for (const entry of this.#timers) {
      if (entry[1].due <= limit && (earliest === undefined || entry[1].due < earliest[1].due)) earliest = entry;
    }
    return earliest;
  }
}
