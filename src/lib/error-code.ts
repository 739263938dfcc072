/** The string `code` Node and undici put on their errors (`ENOENT`, `UND_ERR_HEADERS_TIMEOUT`), if any. */
export function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  return typeof error.code === 'string' ? error.code : undefined;
}
