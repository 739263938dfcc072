/**
 * How log lines look. JSON (pino's own lines) for machines; `pretty` for a terminal: pino-pretty in-process,
 * one line per record, and the per-request line reads `GET /videos/vid_… → 200 3.1 ms [req_…]`.
 */
import pinoPretty from 'pino-pretty';

/** The fields of the one line logged per request (src/http/app-plugin.ts): flat, so JSON consumers filter easily. */
export interface RequestLogFields {
  method: string;
  url: string;
  /** The route pattern (`/videos/:id`), or `unmatched`. */
  route: string;
  statusCode: number;
  /** Milliseconds from receiving the request to the end of the response. */
  responseTime: number;
  /** The problem code of an error answer. */
  code?: string;
}

type PrettyStream = ReturnType<typeof pinoPretty>;

export const requestCompletedMessage = 'request completed';

/** Query parameters whose values are credentials (stream tokens, misplaced keys): masked in the logged URL. */
const secretParam = /token|key|secret|signature|password|auth/i;

/** The URL as logged: at most 300 characters, credential-looking query values replaced by `[redacted]`. */
export function loggableUrl(url: string): string {
  const queryAt = url.indexOf('?');
  let shown = url;
  if (queryAt !== -1) {
    const query = url
      .slice(queryAt + 1)
      .split('&')
      .map((pair) => {
        const name = pair.split('=', 1)[0] ?? '';
        return secretParam.test(name) && pair.includes('=') ? `${name}=[redacted]` : pair;
      })
      .join('&');
    shown = `${url.slice(0, queryAt)}?${query}`;
  }
  return shown.length > 300 ? `${shown.slice(0, 297)}...` : shown;
}

const requestKeys = ['method', 'url', 'route', 'statusCode', 'responseTime', 'code'] as const;

const isRequestLine = (log: Record<string, unknown>): boolean =>
  log['msg'] === requestCompletedMessage && typeof log['method'] === 'string' && typeof log['statusCode'] === 'number';

/** The message part of a pretty line; the request id comes last, in brackets, on every line that has one. */
export function prettyMessage(log: Record<string, unknown>): string {
  const reqId = typeof log['reqId'] === 'string' ? ` [${log['reqId']}]` : '';
  if (isRequestLine(log)) {
    const time = typeof log['responseTime'] === 'number' ? ` ${log['responseTime'].toFixed(1)} ms` : '';
    const code = typeof log['code'] === 'string' ? ` ${log['code']}` : '';
    return `${String(log['method'])} ${String(log['url'])} → ${String(log['statusCode'])}${code}${time}${reqId}`;
  }
  return `${typeof log['msg'] === 'string' ? log['msg'] : ''}${reqId}`;
}

/**
 * A pino-pretty stream for terminals, written synchronously to stdout (no worker thread: start-up and the last
 * lines at exit stay in order). The request line's own fields are shown in its message, not repeated after it.
 */
export function prettyLogStream(options: { colorize?: boolean; destination?: NodeJS.WritableStream } = {}): PrettyStream {
  return pinoPretty({
    colorize: options.colorize ?? process.stdout.isTTY === true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: ['pid', 'hostname', 'reqId', ...requestKeys].join(','),
    singleLine: true,
    sync: true,
    messageFormat: (log) => prettyMessage(log),
    ...(options.destination === undefined ? { destination: 1 } : { destination: options.destination }),
  });
}
