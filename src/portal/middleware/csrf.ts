import type { MiddlewareHandler } from 'hono';
import { AppError } from '../../errors.js';
import { csrfTokenMatches, type PortalDeps, type PortalEnv } from '../http.js';
import { QUEUE_DASHBOARD_PATH } from '../routes/admin.js';
import { UPLOAD_PATH } from '../new-request.js';

/**
 * Every state-changing request must (1) carry an Origin header equal to
 * PUBLIC_URL's origin — browsers send it on every form POST, and a missing one
 * is refused rather than trusted — and (2) carry the per-session (or
 * pre-session) token from the form's hidden `_csrf` field. Either check alone
 * has known gaps; together they don't.
 */
export function csrfProtection(deps: PortalDeps): MiddlewareHandler<PortalEnv> {
  const origin = new URL(deps.ctx.config.PUBLIC_URL).origin;
  return async (c, next) => {
    if (c.req.method === 'GET' || c.req.method === 'HEAD') return next();
    if (c.req.header('origin') !== origin) throw new AppError('CSRF', 'missing or foreign Origin header');
    // The queue dashboard's own script sends JSON, not our forms: for it the Origin
    // check stands with the staff-only session and its SameSite=Lax cookie.
    if (c.req.path.startsWith(`${QUEUE_DASHBOARD_PATH}/api/`)) return next();
    // The upload forms (a reply, a new request) are parsed as a stream by their
    // routes, which check the token field the moment it arrives (streamed-form.ts):
    // buffering the whole form here to find the token is what this avoids.
    if (UPLOAD_PATH.test(c.req.path)) return next();
    // Non-form bodies parse to {} and so fail the token check below.
    let body: Record<string, unknown>;
    try {
      body = await c.req.parseBody({ all: true });
    } catch (err) {
      throw new AppError('CSRF', 'unparseable form body', { cause: err });
    }
    if (!csrfTokenMatches(c, deps, body['_csrf'])) throw new AppError('CSRF', 'missing or wrong CSRF token');
    await next();
  };
}
