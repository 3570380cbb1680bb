import { Hono } from 'hono';
import type { AppContext } from '../context.js';
import { registerHealthRoutes } from './routes/health.js';

export function createPortalApp(ctx: AppContext): Hono {
  const app = new Hono();
  registerHealthRoutes(app, ctx);
  return app;
}
