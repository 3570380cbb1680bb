import { Hono, type MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { secureHeaders } from 'hono/secure-headers';
import { createPortalLimiters } from '../auth/rate-limit.js';
import type { AppContext } from '../context.js';
import { AppError, type ErrorCode } from '../errors.js';
import { httpStatusOf } from './http-errors.js';
import { formatBytes, loadViews } from './views.js';
import { UPLOAD_PATH, uploadFormLimit } from './new-request.js';
import { clientIp, renderPage, type PortalContext, type PortalDeps, type PortalEnv } from './http.js';
import { canonicalHost } from './middleware/canonical-host.js';
import { csrfProtection } from './middleware/csrf.js';
import { requireUser, sessionAndLocale } from './middleware/session.js';
import { registerMetricsRoute, registerQueueDashboard } from './routes/admin.js';
import { registerAssetRoutes } from './routes/assets.js';
import { registerAuthRoutes } from './routes/auth.js';
import { registerFileRoutes } from './routes/files.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerLocaleRoutes } from './routes/locale.js';
import { registerPasswordSetRoutes } from './routes/password-set.js';
import { registerProfileRoutes } from './routes/profile.js';
import { registerRequestActionRoutes } from './routes/request-actions.js';
import { OPEN_REQUEST_PATHS, registerRequestNewRoutes } from './routes/request-new.js';
import { registerRequestRoutes } from './routes/requests.js';
import { registerSatisfactionRoutes } from './routes/satisfaction.js';
import { registerSignInLinkRoutes } from './routes/sign-in-link.js';

/** Ordinary forms are small; only the comment form (with uploads) gets its own, larger limit. */
const FORM_LIMIT_BYTES = 256 * 1024;

/**
 * Uploads are streamed, but each file is held in memory until its reply or
 * request is stored (one copy, up to ATTACHMENT_MAX_BYTES per file and uploadFormLimit
 * per form), so how many run at once is what bounds memory: one per user,
 * UPLOADS_IN_FLIGHT per process. A request over either limit is answered 429
 * before its body is read.
 */
export const UPLOADS_PER_USER = 1;
export const UPLOADS_IN_FLIGHT = 4;

function uploadSlots(deps: PortalDeps): MiddlewareHandler<PortalEnv> {
  const perUser = new Map<string, number>();
  let total = 0;
  return async (c, next) => {
    if (c.req.method !== 'POST' || !UPLOAD_PATH.test(c.req.path)) return next();
    // Signed-out visitors (a new request with REGISTRATION=open) are held to one upload per client address.
    const user = c.get('user');
    const key = user ? `user:${user.id}` : `ip:${clientIp(c, deps)}`;
    const mine = perUser.get(key) ?? 0;
    if (mine >= UPLOADS_PER_USER || total >= UPLOADS_IN_FLIGHT) throw new AppError('RATE_LIMITED', 'too many uploads in flight');
    perUser.set(key, mine + 1);
    total += 1;
    try {
      await next();
    } finally {
      total -= 1;
      const left = (perUser.get(key) ?? 1) - 1;
      if (left <= 0) perUser.delete(key);
      else perUser.set(key, left);
    }
  };
}

const ERROR_PAGES: Partial<Record<number, { titleKey: string; messageKey: string }>> = {
  403: { titleKey: 'error.403_title', messageKey: 'error.csrf' },
  404: { titleKey: 'error.404_title', messageKey: 'error.404' },
  409: { titleKey: 'error.409_title', messageKey: 'request.closed' },
  413: { titleKey: 'error.413_title', messageKey: 'error.413' },
  429: { titleKey: 'error.429_title', messageKey: 'error.429' },
};
/** Refusals that share a status with others but need their own explanation. */
const ERROR_CODE_PAGES: Partial<Record<ErrorCode, { titleKey: string; messageKey: string }>> = {
  UPLOAD_QUOTA: { titleKey: 'error.upload_quota_title', messageKey: 'error.upload_quota' },
};

export function createPortalApp(ctx: AppContext): Hono<PortalEnv> {
  const deps: PortalDeps = { ctx, views: loadViews(), limiters: createPortalLimiters(ctx.redis, ctx.config) };
  const app = new Hono<PortalEnv>();

  app.use(
    '*',
    secureHeaders({
      // No inline script or style anywhere: one stylesheet and one small script (/assets/time-zone.js) from us.
      contentSecurityPolicy: {
        defaultSrc: ["'none'"],
        scriptSrc: ["'self'"],
        // PUBLIC_URL's origin too: the page explaining that a form went to the wrong host name is styled.
        styleSrc: ["'self'", new URL(ctx.config.PUBLIC_URL).origin],
        imgSrc: ["'self'", 'data:'],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
      },
      xFrameOptions: 'DENY',
      // Set-password links carry their token in the URL, so no Referer may leave the site. Not
      // "no-referrer": under it browsers send `Origin: null` on form POSTs and the Origin check fails.
      referrerPolicy: 'same-origin',
      strictTransportSecurity: ctx.config.secureCookies ? 'max-age=31536000; includeSubDomains' : false,
      // Routes that need a stricter policy (attachments) set their own headers first.
      overwrite: false,
    }),
  );
  registerHealthRoutes(app, ctx);
  registerMetricsRoute(app, deps);
  registerAssetRoutes(app);

  // Body limits come first: nothing may buffer a request body before its size is checked.
  const tooLarge = () => {
    throw new AppError('UPLOAD_TOO_LARGE');
  };
  const formLimit = bodyLimit({ maxSize: FORM_LIMIT_BYTES, onError: tooLarge });
  const uploadLimit = uploadFormLimit(ctx.config.ATTACHMENT_MAX_BYTES);
  app.use('*', async (c, next) => {
    if (c.req.method !== 'POST') return next();
    if (!UPLOAD_PATH.test(c.req.path)) return formLimit(c, next);
    // Upload forms are streamed, and the parser counts the body as it reads it (streamed-form.ts):
    // hono's bodyLimit would buffer a chunked body whole to count it. A declared size over the
    // limit is refused here, before anything is read.
    if (Number(c.req.header('content-length') ?? 0) > uploadLimit) tooLarge();
    return next();
  });
  app.use('*', sessionAndLocale(deps));
  // After /healthz and /metrics (probes and scrapers use any address), before anything that relies on the origin.
  app.use('*', canonicalHost(deps));
  // Before CSRF: a stranger's upload is turned away without its body ever being parsed.
  app.use('/requests', requireUser(deps));
  const signedIn = requireUser(deps);
  app.use('/requests/*', (c, next) => (OPEN_REQUEST_PATHS.has(c.req.path) ? next() : signedIn(c, next)));
  app.use('/profile', signedIn);
  app.use('/profile/*', signedIn);
  app.use('*', uploadSlots(deps));
  app.use('*', csrfProtection(deps));

  registerAuthRoutes(app, deps);
  registerPasswordSetRoutes(app, deps);
  registerLocaleRoutes(app, deps);
  registerSignInLinkRoutes(app, deps);
  // Before /requests/:id, which would take "new" for an id.
  registerRequestNewRoutes(app, deps);
  registerRequestRoutes(app, deps);
  registerRequestActionRoutes(app, deps);
  registerProfileRoutes(app, deps);
  registerFileRoutes(app, deps);
  registerSatisfactionRoutes(app, deps);
  registerQueueDashboard(app, deps);

  app.notFound((c) => renderError(c as PortalContext, deps, 404));
  app.onError((err, c) => {
    const pc = c as PortalContext;
    if (err instanceof AppError) {
      const status = httpStatusOf(err.code);
      if (status >= 500) ctx.log.error({ err: err.message, code: err.code }, 'portal error');
      else ctx.log.debug({ code: err.code, reason: err.message, path: c.req.path }, 'portal request refused');
      return renderError(pc, deps, status, err.code);
    }
    if (err instanceof HTTPException) return err.getResponse();
    ctx.log.error({ err: err instanceof Error ? err.stack : String(err), path: c.req.path }, 'portal request failed');
    return renderError(pc, deps, 500);
  });
  return app;
}

function renderError(c: PortalContext, deps: PortalDeps, status: number, code?: ErrorCode): Response {
  // The error may have struck before the session middleware ran.
  if (!c.get('locale')) c.set('locale', deps.ctx.config.DEFAULT_LOCALE);
  if (c.get('user') === undefined) c.set('user', null);
  if (c.get('session') === undefined) c.set('session', null);
  const page = (code && ERROR_CODE_PAGES[code]) || ERROR_PAGES[status] || { titleKey: 'error.title', messageKey: 'error.500' };
  // A refused upload is answered before its body is read: close the connection rather
  // than leave the unread rest of the body where the client's next request would go.
  if (status === 413) c.header('Connection', 'close');
  try {
    return renderPage(
      c,
      deps,
      'error',
      { ...page, size: formatBytes(deps.ctx.config.ATTACHMENT_MAX_BYTES), quota: formatBytes(deps.ctx.config.UPLOAD_DAILY_BYTES) },
      status as ContentfulStatusCode,
    );
  } catch {
    return c.text('Internal error', 500);
  }
}
