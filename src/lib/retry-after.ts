/**
 * `Retry-After` (RFC 9110 §10.2.3) as milliseconds from `now`: delay-seconds or an HTTP-date (a date in the past
 * gives 0). Null when absent or unreadable, so the caller's own schedule applies.
 *
 * Strict by default (whole seconds, IMF-fixdate), as the RFC writes it — what webhook receivers get held to.
 * `lenient` also reads decimal seconds and the obsolete date forms, for upstream relays that drift.
 */
export function parseRetryAfter(
  value: string | readonly string[] | null | undefined,
  now: number,
  { lenient = false }: { lenient?: boolean } = {},
): number | null {
  const header = typeof value === 'string' ? value : value?.[0];
  if (header === undefined) return null;
  const text = header.trim();
  if ((lenient ? /^\d+(?:\.\d+)?$/ : /^\d+$/).test(text)) return Math.round(Number(text) * 1000);
  // Only an HTTP-date, not anything Date.parse happens to accept ("1", "soon", ISO dates).
  const httpDate = lenient ? /^[A-Za-z]{3,9},?\s/ : /^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/;
  if (!httpDate.test(text)) return null;
  const at = Date.parse(text);
  return Number.isFinite(at) ? Math.max(0, at - now) : null;
}
