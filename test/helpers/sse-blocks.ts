import type { Readable } from 'node:stream';

/** Splits an SSE body into blocks (events and comments) as they arrive. */
export function sseBlocks(body: Readable): { next(): Promise<string | null> } {
  let buffer = '';
  let ended = false;
  let notify: (() => void) | null = null;
  body.setEncoding('utf8');
  body.on('data', (chunk: string) => {
    buffer += chunk;
    notify?.();
  });
  body.on('end', () => {
    ended = true;
    notify?.();
  });
  body.on('error', () => {
    ended = true;
    notify?.();
  });
  return {
    /** The next block without its trailing blank line, or null once the stream has ended. */
    async next(): Promise<string | null> {
      for (;;) {
        const end = buffer.indexOf('\n\n');
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          return block;
        }
        if (ended) return null;
        await new Promise<void>((resolve) => {
          notify = resolve;
        });
        notify = null;
      }
    },
  };
}
