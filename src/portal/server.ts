import { serve, type ServerType } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import type { AppContext } from '../context.js';
import { createPortalApp } from './app.js';

export interface PortalServer {
  server: ServerType;
  port: number;
  close(): Promise<void>;
}

export async function startPortal(
  ctx: AppContext,
  host = ctx.config.HTTP_LISTEN.host,
  port = ctx.config.HTTP_LISTEN.port,
): Promise<PortalServer> {
  const app = createPortalApp(ctx);
  const server = await new Promise<ServerType>((resolve, reject) => {
    const { HTTP_HEADERS_TIMEOUT_MS: headersTimeout, HTTP_REQUEST_TIMEOUT_MS: requestTimeout } = ctx.config;
    const serverOptions = {
      // Slowloris: the whole request head within HTTP_HEADERS_TIMEOUT_MS, the whole request within
      // HTTP_REQUEST_TIMEOUT_MS. Node checks them only every connectionsCheckingInterval (30 s by
      // default, which would let a slow client hold its socket that much longer), so check often.
      headersTimeout,
      requestTimeout,
      connectionsCheckingInterval: Math.min(1_000, headersTimeout),
    };
    const s = serve({ fetch: app.fetch, hostname: host, port, serverOptions }, () => resolve(s));
    s.once('error', reject);
  });
  (server as unknown as { keepAliveTimeout: number }).keepAliveTimeout = 5_000;
  const boundPort = (server.address() as AddressInfo).port;
  ctx.log.info({ host, port: boundPort }, 'portal listening');
  return {
    server,
    port: boundPort,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Keep-alive sockets would hold close() open until they time out.
        (server as { closeIdleConnections?: () => void }).closeIdleConnections?.();
      }),
  };
}
