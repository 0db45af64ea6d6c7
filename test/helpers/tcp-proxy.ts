import { createServer, connect, type Socket } from 'node:net';

/**
 * A userspace TCP proxy for link faults the kernel here cannot make (no tc netem): added delay per
 * chunk, and a stall that keeps both sockets open but forwards nothing — a half-open link where
 * neither side gets a FIN or RST and only keepalive can tell.
 */
export interface TcpProxy {
  port: number;
  /**
   * Every client connection so far: when it was accepted and when the client side closed. A client
   * closing while the proxy stalls is the client's own doing (its keepalive), as nothing reached it.
   */
  connections(): Array<{ openedAt: number; clientClosedAt?: number }>;
  setDelay(ms: number): void;
  stall(): void;
  resume(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }, listenHost = '127.0.0.1'): Promise<TcpProxy> {
  let delayMs = 0;
  let stalled = false;
  const sockets = new Set<Socket>();
  const conns: Array<{ openedAt: number; clientClosedAt?: number }> = [];
  const pipe = (from: Socket, to: Socket) => {
    from.on('data', (chunk) => {
      if (stalled) return; // swallowed: the peer never hears of it
      if (delayMs > 0) setTimeout(() => to.writable && to.write(chunk), delayMs);
      else if (to.writable) to.write(chunk);
    });
    from.on('end', () => {
      if (!stalled) to.end();
    });
    from.on('error', () => to.destroy());
    from.on('close', () => {
      if (!stalled) to.destroy();
    });
  };
  const server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    sockets.add(client);
    sockets.add(upstream);
    const conn: { openedAt: number; clientClosedAt?: number } = { openedAt: Date.now() };
    conns.push(conn);
    client.on('close', () => {
      conn.clientClosedAt = Date.now();
      sockets.delete(client);
    });
    upstream.on('close', () => sockets.delete(upstream));
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, listenHost, () => resolve()));
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    connections: () => conns.map((c) => ({ ...c })),
    setDelay: (ms) => (delayMs = ms),
    stall: () => (stalled = true),
    resume: () => (stalled = false),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
