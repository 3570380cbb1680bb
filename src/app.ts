import type { Config } from './config.js';
import { closeContext, createContext, loadInstallation, type AppContext } from './context.js';
import { OUTBOUND_KINDS } from './db/database.js';
import { ensureDatabase, migrateToLatest } from './db/migrate.js';
import { startSmtpListener, type SmtpListener } from './inbound/smtp-listener.js';
import { startWorkers, type WorkerSet } from './jobs/worker.js';
import type { Logger } from './log.js';
import { preloadTemplates } from './mail/render.js';
import { startPortal, type PortalServer } from './portal/server.js';
import { assertNoEviction, waitForReady } from './redis.js';

export interface RunningApp {
  ctx: AppContext;
  smtp?: SmtpListener;
  portal?: PortalServer;
  workers?: WorkerSet;
  /** Graceful stop: no new SMTP connections, finish in-flight work, close workers and pools. */
  stop(): Promise<void>;
}

/** Starts the roles in config.REPLYLINE_ROLES. Migrates first; refuses to run on an evicting Redis. */
export async function startApp(config: Config, log?: Logger): Promise<RunningApp> {
  // A missing or broken template is a packaging fault: refuse to start rather than fail each mail later.
  preloadTemplates(OUTBOUND_KINDS);
  if (await ensureDatabase(config.DATABASE_URL)) log?.info('created database');
  const ctx = createContext(config, log);
  const app: RunningApp = { ctx, stop: () => stopApp(app) };
  try {
    const applied = await migrateToLatest(ctx.db);
    if (applied.length) ctx.log.info({ applied }, 'migrations applied');
    await loadInstallation(ctx);
    if (config.usingDevSecret) {
      ctx.log.warn(
        'SECRET_KEY is not set: using the built-in development key. Reply addresses and tokens are forgeable. Set SECRET_KEY before going live.',
      );
    }
    try {
      await waitForReady(ctx.redis, 5_000);
    } catch {
      ctx.log.warn('Redis is not reachable at start; mail is still accepted and will be processed once it is back');
    }
    if (ctx.redis.status === 'ready') await assertNoEviction(ctx.redis);

    const roles = new Set(config.REPLYLINE_ROLES);
    if (roles.has('worker')) app.workers = startWorkers(ctx);
    if (roles.has('portal')) app.portal = await startPortal(ctx);
    if (roles.has('smtp')) app.smtp = await startSmtpListener(ctx);
    ctx.log.info({ roles: [...roles] }, 'replyline started');
    return app;
  } catch (err) {
    await stopApp(app).catch(() => {});
    throw err;
  }
}

async function stopApp(app: RunningApp): Promise<void> {
  // Order matters: stop taking new work at the edges, then drain the workers,
  // then close the pools they were using.
  await Promise.allSettled([app.smtp?.close(), app.portal?.close()]);
  await app.workers?.close();
  await closeContext(app.ctx);
}
