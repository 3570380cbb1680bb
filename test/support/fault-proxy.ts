import { createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy the fault tests put between replyline and PostgreSQL, Redis or
 * the relay, so a dependency can be cut, stalled and restored mid-run
 * without touching the real server (which other tests share).
 *
 *  - `pass`:  bytes flow both ways (optionally after `delayMs`).
 *  - `cut`:   every open connection is reset and new ones are refused
 *             (closed immediately), like a crashed server.
 *  - `stall`: connections are accepted but nothing is forwarded, like a
 *             network partition; clients see timeouts, not errors.
 */
export type FaultMode = 'pass' | 'cut' | 'stall';

export class FaultProxy {
  private server: Server;
  private sockets = new Set<Socket>();
  mode: FaultMode = 'pass';
  delayMs = 0;
  port = 0;
  connections = 0;

  constructor(private readonly target: { host: string; port: number }) {
    this.server = createServer((client) => this.onClient(client));
  }

  static async start(target: { host: string; port: number }): Promise<FaultProxy> {
    const proxy = new FaultProxy(target);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    proxy.port = (proxy.server.address() as { port: number }).port;
    return proxy;
  }

  /** The target URL rewritten to go through this proxy. */
  url(original: string): string {
    const u = new URL(original);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  private track(s: Socket): void {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
    s.on('error', () => {});
  }

  private onClient(client: Socket): void {
    this.track(client);
    this.connections++;
    if (this.mode === 'cut') {
      client.resetAndDestroy();
      return;
    }
    if (this.mode === 'stall') return; // hold it open, forward nothing
    const upstream = createConnection(this.target);
    this.track(upstream);
    const forward = (from: Socket, to: Socket) =>
      from.on('data', (chunk) => {
        if (this.mode !== 'pass') return;
        if (this.delayMs > 0) setTimeout(() => to.writable && to.write(chunk), this.delayMs);
        else if (to.writable) to.write(chunk);
      });
    forward(client, upstream);
    forward(upstream, client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  }

  /** Resets every open connection and refuses new ones. */
  cut(): void {
    this.mode = 'cut';
    for (const s of this.sockets) s.resetAndDestroy();
  }

  stall(): void {
    this.mode = 'stall';
  }

  restore(): void {
    this.mode = 'pass';
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
