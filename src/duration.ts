/**
 * Durations in configuration: a number with a unit, `ms`, `s`, `m`, `h` or `d` (`250ms`, `5s`, `1.5s`, `2h`, `30d`).
 * Pure: no I/O, so the config loader and its schema share one definition of what a duration is.
 */
import { decimalPattern } from '../schemas/duration-patterns.js';

const unitMs = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
type Unit = keyof typeof unitMs;

const durationRegex = new RegExp(`^(${decimalPattern})(ms|s|m|h|d)?$`);

export interface ParseDurationOptions {
  /** Unit of a bare number (`2000` in a `*_MS` variable). Without it, a bare number is not a duration. */
  bareUnit?: 'ms';
}

/**
 * Parses `250ms`, `5s`, `2m`, `2h`, `30d`, `1.5s` into whole milliseconds (rounded).
 * Returns undefined when `text` is not a duration; surrounding whitespace is ignored.
 */
export function parseDuration(text: string, options: ParseDurationOptions = {}): number | undefined {
  const match = durationRegex.exec(text.trim());
  if (match === null) return undefined;
  const [, amount = '', unitText] = match;
  const unit: Unit | undefined = unitText === undefined ? options.bareUnit : (unitText as Unit);
  if (unit === undefined) return undefined;
  const ms = Math.round(Number(amount) * unitMs[unit]);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** The shortest exact rendering of a millisecond count (`300000` → `5m`), for messages and banners. */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms !== 0 && ms % unitMs[unit] === 0) return `${ms / unitMs[unit]}${unit}`;
  }
  return `${ms}ms`;
}
