/** When a signed download URL stops working. Pure. */

/** ElkAPI documents a 3600 s lifetime for `download_url`; used when the URL carries no signature window. */
export const DEFAULT_DOWNLOAD_URL_TTL_MS = 3600 * 1000;
// S3 / GCS presigned URLs live at most 7 days; a larger value is not a real signature window.
const MAX_SIGNED_URL_TTL_SECONDS = 7 * 24 * 3600;

/** `20241015T093000Z` (SigV4 / GCS V4 date) → epoch ms, or null. */
export function parseSigningDate(value: string): number | null {
  const text = value.trim();
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (match === null) return null;
  const [year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0] = match.slice(1).map(Number);
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  // Date.UTC rolls 2024-13-45 over into a valid date; accept only what round-trips unchanged.
  const roundTrip = `${new Date(ms).toISOString().slice(0, 19).replace(/[-:]/g, '')}Z`;
  return roundTrip === text ? ms : null;
}

function queryParamIgnoringCase(url: URL, name: string): string | null {
  const wanted = name.toLowerCase();
  for (const [key, value] of url.searchParams) {
    if (key.toLowerCase() === wanted) return value;
  }
  return null;
}

/** The signature window of a presigned S3 (`X-Amz-*`) or GCS (`X-Goog-*`) URL, when it has a valid one. */
function signedUrlWindow(downloadUrl: string): { signedAtMs: number; ttlMs: number } | null {
  let url: URL;
  try {
    url = new URL(downloadUrl);
  } catch {
    return null;
  }
  for (const vendor of ['Amz', 'Goog']) {
    const date = queryParamIgnoringCase(url, `X-${vendor}-Date`);
    const expires = queryParamIgnoringCase(url, `X-${vendor}-Expires`);
    if (date === null || expires === null || !/^\d+$/.test(expires.trim())) continue;
    const signedAtMs = parseSigningDate(date);
    const ttlSeconds = Number(expires.trim());
    if (signedAtMs === null || ttlSeconds <= 0 || ttlSeconds > MAX_SIGNED_URL_TTL_SECONDS) continue;
    return { signedAtMs, ttlMs: ttlSeconds * 1000 };
  }
  return null;
}

/** When a download URL stops working, as epoch ms. */
export function downloadUrlExpiresAtMs(downloadUrl: string, fetchedAtMs: number): number {
  const window = signedUrlWindow(downloadUrl);
  if (window === null) return fetchedAtMs + DEFAULT_DOWNLOAD_URL_TTL_MS;
  // Never later than a signature made at fetch time would allow: a future-dated X-Amz-Date (clock skew
  // upstream) must not make us promise a lifetime the URL cannot have.
  return Math.min(window.signedAtMs + window.ttlMs, fetchedAtMs + window.ttlMs);
}
