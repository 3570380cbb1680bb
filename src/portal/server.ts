import { serve, type ServerType } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import type { AppContext } from '../context.js';
import { createPortalApp } from './app.js';

/** Whole request head within 10 s; whole request (uploads included) within 2 min. */
export const HTTP_HEADERS_TIMEOUT_MS = 10_000;
export const HTTP_REQUEST_TIMEOUT_MS = 120_000;

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
    const s = serve({ fetch: app.fetch, hostname: host, port }, () => resolve(s));
    s.once('error', reject);
  });
  // Slowloris: Node's defaults let a client dribble headers for 60 s and a body for 5 min.
  const http = server as unknown as { headersTimeout: number; requestTimeout: number; keepAliveTimeout: number };
  http.headersTimeout = HTTP_HEADERS_TIMEOUT_MS;
  http.requestTimeout = HTTP_REQUEST_TIMEOUT_MS;
  http.keepAliveTimeout = 5_000;
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
