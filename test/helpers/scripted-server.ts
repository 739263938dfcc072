/**
 * A real `node:http` server on 127.0.0.1 whose answers each test scripts: a fake upstream, a webhook
 * receiver, anything that must be reached over an actual socket. Every request is recorded with its body.
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  /** Path and query, as sent. */
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** The client's port: equal ports on consecutive requests mean the connection was reused. */
  remotePort: number | undefined;
}

/** Answers one request; `index` counts requests since the server started (0-based). May leave it unanswered. */
export type ScriptedHandler = (request: RecordedRequest, response: ServerResponse, index: number) => void | Promise<void>;

export interface ScriptedServer {
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  requests: RecordedRequest[];
  /** Replaces the handler for the requests that follow. */
  respond(handler: ScriptedHandler): void;
  /** Drops open connections (so unanswered requests end) and stops listening. */
  close(): Promise<void>;
}

/** A recorded request's headers as one string each (repeated ones joined), the shape webhook verifiers take. */
export const flatHeaders = (headers: IncomingHttpHeaders): Record<string, string> =>
  Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, Array.isArray(value) ? value.join(', ') : (value ?? '')]));

/** Writes a JSON answer. */
export function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  response.writeHead(status, { 'content-type': 'application/json', ...headers });
  response.end(JSON.stringify(body));
}

/** Writes a raw answer (HTML pages, malformed JSON, …). */
export function sendText(
  response: ServerResponse,
  status: number,
  text: string,
  headers: Record<string, string> = { 'content-type': 'text/plain' },
): void {
  response.writeHead(status, headers);
  response.end(text);
}

/** Uses the handlers in turn, one per request; the last one answers every request after that. */
export function inSequence(...handlers: ScriptedHandler[]): ScriptedHandler {
  let next = 0;
  return (request, response, index) => {
    const handler = handlers[Math.min(next, handlers.length - 1)];
    next += 1;
    if (handler === undefined) return sendText(response, 501, 'no handler scripted');
    return handler(request, response, index);
  };
}

export async function startScriptedServer(): Promise<ScriptedServer> {
  const requests: RecordedRequest[] = [];
  let handler: ScriptedHandler = (_request, response) => sendText(response, 501, 'no handler scripted');

  const server = createServer((incoming, response) => {
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.on('end', () => {
      const recorded: RecordedRequest = {
        method: incoming.method ?? '',
        url: incoming.url ?? '',
        headers: incoming.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        remotePort: incoming.socket.remotePort,
      };
      requests.push(recorded);
      Promise.resolve(handler(recorded, response, requests.length - 1)).catch((error: unknown) => {
        if (!response.headersSent) sendText(response, 500, `scripted handler threw: ${String(error)}`);
        else response.destroy();
      });
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    respond(next) {
      handler = next;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
