import type { Hono } from 'hono';
import { updateProfile } from '../../db/queries/users.js';
import { COOKIE, field, redirectTo, safeReturnPath, writeCookie, type PortalDeps, type PortalEnv } from '../http.js';
import { isLocale } from '../i18n.js';

const ONE_YEAR_S = 365 * 24 * 3600;

/** The language switcher: a plain form, so it works without JavaScript. */
export function registerLocaleRoutes(app: Hono<PortalEnv>, deps: PortalDeps): void {
  app.post('/locale', async (c) => {
    const body = await c.req.parseBody();
    const locale = field(body, 'locale');
    const back = safeReturnPath(field(body, 'return_to'));
    if (!isLocale(locale)) return redirectTo(c, deps, back);
    writeCookie(c, deps, COOKIE.lang, locale, ONE_YEAR_S);
    const user = c.get('user');
    // Signed in: the choice is the account's, so mail follows it too.
    if (user && user.locale !== locale) {
      await updateProfile(deps.ctx.db, user.id, { locale });
    }
    return redirectTo(c, deps, back);
  });
}
