import type { MiddlewareHandler } from 'hono';
import { loadSession } from '../../db/queries/sessions.js';
import { COOKIE, clearCookie, readCookie, type PortalDeps, type PortalEnv } from '../http.js';
import { isLocale, localeFromHeader } from '../i18n.js';

/**
 * Loads the signed-in user (if any) and decides the page language:
 * the user's own locale, else the switcher's cookie, else Accept-Language.
 */
export function sessionAndLocale(deps: PortalDeps): MiddlewareHandler<PortalEnv> {
  return async (c, next) => {
    c.set('session', null);
    c.set('user', null);
    const raw = readCookie(c, deps, COOKIE.session);
    if (raw !== undefined) {
      const loaded = await loadSession(deps.ctx.db, deps.ctx.config, raw);
      if (loaded) {
        c.set('session', loaded.session);
        c.set('user', loaded.user);
      } else {
        clearCookie(c, deps, COOKIE.session);
      }
    }
    const user = c.get('user');
    const cookieLocale = readCookie(c, deps, COOKIE.lang);
    c.set('locale', user ? user.locale : isLocale(cookieLocale) ? cookieLocale : localeFromHeader(c, deps.ctx.config.DEFAULT_LOCALE));
    await next();
  };
}

/** Pages behind sign-in send strangers to /login and bring them back afterwards. */
export function requireUser(deps: PortalDeps): MiddlewareHandler<PortalEnv> {
  return async (c, next) => {
    if (!c.get('user')) {
      const url = new URL(c.req.url);
      const back = c.req.method === 'GET' ? url.pathname + url.search : '/requests';
      return c.redirect(`${deps.ctx.config.PUBLIC_URL}/login?notice=expired&next=${encodeURIComponent(back)}`, 303);
    }
    await next();
  };
}
