/**
 * A real TCP proxy on 127.0.0.1 (port 0) in front of a service the machine runs (Postgres, Redis). Tests cut it
 * to simulate a network fault without ever stopping the shared service: `cut()` destroys every open connection
 * and resets new ones at once (the listening port stays, so `restore()` cannot lose it to another process).
 * Hand-written on node:net: a few lines, and no library does less. The caller closes it (`t.teardown(() => proxy.close())`).
 */
import { type AddressInfo, createServer, type Server, Socket } from 'node:net';

export interface TcpProxy {
  host: '127.0.0.1';
  port: number;
  /** Connections accepted and forwarded since the start (a reconnect shows up as one more). */
  readonly connections: number;
  /** Connections reset because the proxy was cut. */
  readonly refused: number;
  /** Destroys every open connection (both sides) and resets new ones until `restore()`. */
  cut(): void;
  /** Forwards new connections again. */
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const open = new Set<Socket>();
  let isCut = false;
  let connections = 0;
  let refused = 0;

  const track = (socket: Socket): void => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    // A reset from either side is expected here; the other side learns of it by the pipe closing.
    socket.on('error', () => socket.destroy());
  };

  const server: Server = createServer((client) => {
    if (isCut) {
      refused += 1;
      client.resetAndDestroy();
      return;
    }
    connections += 1;
    track(client);
    const upstream = new Socket();
    track(upstream);
    upstream.connect(target.port, target.host);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  const destroyAll = (): void => {
    // A socket that already sent its FIN (the pipe ended it) must not be reset: on Node 20 `resetAndDestroy()`
    // there fails inside libuv (uv_tcp_close_reset refuses a shutting-down handle) yet leaves the handle marked
    // closing, so it is never closed and the process spins forever in its exit cleanup. Plain destroy() closes it.
    for (const socket of open) {
      if (socket.writableEnded) socket.destroy();
      else socket.resetAndDestroy();
    }
    open.clear();
  };

  return {
    host: '127.0.0.1',
    port,
    get connections() {
      return connections;
    },
    get refused() {
      return refused;
    },
    cut() {
      isCut = true;
      destroyAll();
    },
    restore() {
      isCut = false;
    },
    async close() {
      isCut = true;
      destroyAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
