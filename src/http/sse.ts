/*
 * Server-Sent Events framing (WHATWG HTML §9.2). Pure; the route writes these strings to the raw response.
 * Hand-written rather than @fastify/sse (0.x, not a dependency here, its heartbeat runs on a real interval
 * the tests could not drive) or fastify-sse-v2 (async-iterator plumbing over it-pushable): a stream here is one
 * event per status change plus a comment line, and the route needs exact control of when listeners go away.
 */

export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

/** One event; multi-line data is split over several `data:` lines, as the format requires. */
export function formatSseEvent({ event, data, id }: SseEvent): string {
  let text = `event: ${event}\n`;
  if (id !== undefined) text += `id: ${id}\n`;
  for (const line of data.split(/\r\n|\r|\n/)) text += `data: ${line}\n`;
  return `${text}\n`;
}

/** A comment line: ignored by clients, keeps proxies and mobile networks from closing an idle stream. */
export const sseKeepAlive = ': keep-alive\n\n';

/** Response headers of a stream: never cached, never buffered by nginx-style proxies. */
export const sseHeaders = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
} as const;
