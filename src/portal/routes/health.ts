import { sql } from 'kysely';
import type { Hono } from 'hono';
import type { AppContext } from '../../context.js';

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e) => (clearTimeout(t), reject(e)),
    );
  });
}

export async function checkHealth(ctx: AppContext): Promise<{ ok: boolean; postgres: string; redis: string }> {
  const [pg, redis] = await Promise.allSettled([
    withTimeout(sql`select 1`.execute(ctx.db), 2_000),
    withTimeout(ctx.redis.ping(), 2_000),
  ]);
  const describe = (r: PromiseSettledResult<unknown>) => (r.status === 'fulfilled' ? 'ok' : `down: ${String(r.reason?.message ?? r.reason)}`);
  return { ok: pg.status === 'fulfilled' && redis.status === 'fulfilled', postgres: describe(pg), redis: describe(redis) };
}

export function registerHealthRoutes(app: Hono, ctx: AppContext): void {
  app.get('/healthz', async (c) => {
    const health = await checkHealth(ctx);
    c.header('Cache-Control', 'no-store');
    return c.json({ status: health.ok ? 'ok' : 'degraded', postgres: health.postgres, redis: health.redis }, health.ok ? 200 : 503);
  });
}
