import { createRequire } from 'node:module';
import path from 'node:path';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { HonoAdapter } from '@bull-board/hono';
import { serveStatic } from '@hono/node-server/serve-static';
import type { Hono } from 'hono';
import { safeEqual } from '../../core/secrets.js';
import type { PortalDeps, PortalEnv } from '../http.js';
import { requireUser } from '../middleware/session.js';

export const QUEUE_DASHBOARD_PATH = '/admin/queues';

/**
 * bull-board's page loads its own scripts and uses inline styles; it gets a
 * policy of its own (still no inline script, nothing from other origins but
 * its web font) instead of weakening the portal's.
 */
const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline' https://fonts.googleapis.com",
  "font-src 'self' https://fonts.gstatic.com data:",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'self'",
  "form-action 'self'",
].join('; ');

/** The queue dashboard for staff: signed in, role staff, or a 404 that reveals nothing. */
export function registerQueueDashboard(app: Hono<PortalEnv>, deps: PortalDeps): void {
  const adapter = new HonoAdapter(serveStatic);
  createBullBoard({
    queues: Object.values(deps.ctx.queues).map((q) => new BullMQAdapter(q)),
    serverAdapter: adapter,
    options: { uiConfig: { boardTitle: 'replyline queues' } },
  });
  adapter.setBasePath(QUEUE_DASHBOARD_PATH);
  // serveStatic resolves against the working directory; make the UI's path absolute first.
  const uiDist = path.dirname(createRequire(import.meta.url).resolve('@bull-board/ui/package.json'));
  adapter.setStaticPath('/static', path.join(uiDist, 'dist/static')).setViewsPath(path.join(uiDist, 'dist'));

  const staffOnly = requireUser(deps);
  for (const pattern of [QUEUE_DASHBOARD_PATH, `${QUEUE_DASHBOARD_PATH}/*`]) {
    app.use(pattern, staffOnly, async (c, next) => {
      if (c.get('user')?.role !== 'staff') return c.notFound();
      await next();
      c.res.headers.set('Content-Security-Policy', DASHBOARD_CSP);
    });
  }
  app.route(QUEUE_DASHBOARD_PATH, adapter.registerPlugin());
}

/** Prometheus scrape endpoint; with METRICS_TOKEN set it needs `Authorization: Bearer <token>`. */
export function registerMetricsRoute(app: Hono<PortalEnv>, deps: PortalDeps): void {
  const token = deps.ctx.config.METRICS_TOKEN;
  app.get('/metrics', async (c) => {
    if (token) {
      const given = /^Bearer (.+)$/.exec(c.req.header('authorization') ?? '')?.[1] ?? '';
      if (!safeEqual(given, token)) return c.text('unauthorized\n', 401, { 'WWW-Authenticate': 'Bearer' });
    }
    const { registry } = deps.ctx.metrics;
    return c.body(await registry.metrics(), 200, { 'Content-Type': registry.contentType, 'Cache-Control': 'no-store' });
  });
}
