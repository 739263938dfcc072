/** What a duration looks like in configuration; src/duration.ts parses the same text with these. */

/** A non-negative decimal: `5`, `1.5`, `.5`. No sign, no exponent, no separators. */
export const decimalPattern = '(?:[0-9]+(?:\\.[0-9]+)?|\\.[0-9]+)';
/** A duration that carries its unit (`ms` is listed before `m` so the alternation reads naturally). */
export const durationWithUnitPattern = `${decimalPattern}(?:ms|s|m|h|d)`;
