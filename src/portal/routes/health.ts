import type { Env, Hono } from 'hono';
import type { AppContext } from '../../context.js';
import { pingDatabase } from '../../db/queries/health.js';
import { withTimeout } from '../../timeout.js';

export async function checkHealth(ctx: AppContext): Promise<{ ok: boolean; postgres: string; redis: string }> {
  const [pg, redis] = await Promise.allSettled([
    withTimeout(pingDatabase(ctx.db), 2_000, 'PostgreSQL check'),
    withTimeout(ctx.redis.ping(), 2_000, 'Redis check'),
  ]);
  const describe = (r: PromiseSettledResult<unknown>) =>
    r.status === 'fulfilled' ? 'ok' : `down: ${String(r.reason?.message ?? r.reason)}`;
  return { ok: pg.status === 'fulfilled' && redis.status === 'fulfilled', postgres: describe(pg), redis: describe(redis) };
}

export function registerHealthRoutes<E extends Env>(app: Hono<E>, ctx: AppContext): void {
  app.get('/healthz', async (c) => {
    const health = await checkHealth(ctx);
    c.header('Cache-Control', 'no-store');
    return c.json({ status: health.ok ? 'ok' : 'degraded', postgres: health.postgres, redis: health.redis }, health.ok ? 200 : 503);
  });
}
