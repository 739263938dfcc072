import { createServer, Socket } from 'node:net';

import type { Test } from 'tap';

/**
 * A TCP proxy on 127.0.0.1 (port 0) in front of a real server, that a test can cut: `cut()` destroys every
 * connection through it and refuses new ones (reset at once) until `restore()`. For outages without stopping the
 * machine's services. Hand-written on node:net: a few lines, no library does less.
 */
export interface TcpProxy {
  port: number;
  cut(): void;
  restore(): void;
  /** Connections open through the proxy now. */
  open(): number;
}

export async function startTcpProxy(t: Test, target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let cut = false;
  const server = createServer((client) => {
    if (cut) {
      client.resetAndDestroy();
      return;
    }
    const upstream = new Socket();
    upstream.connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return {
    port: address.port,
    cut() {
      cut = true;
      for (const socket of sockets) socket.resetAndDestroy();
    },
    restore() {
      cut = false;
    },
    open: () => sockets.size / 2,
  };
}
