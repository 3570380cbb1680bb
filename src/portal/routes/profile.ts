import type { Hono } from 'hono';
import { verifyPassword } from '../../auth/password.js';
import { changePassword } from '../../auth/password-flows.js';
import { checkPasswordPolicy } from '../../auth/policy.js';
import { revokeUserSessions } from '../../db/queries/sessions.js';
import { updateProfile } from '../../db/queries/users.js';
import { AppError } from '../../errors.js';
import {
  COOKIE,
  clearCookie,
  clientIp,
  field,
  rawField,
  redirectTo,
  renderPage,
  safeReturnPath,
  type PortalContext,
  type PortalDeps,
  type PortalEnv,
} from '../http.js';
import { isLocale, LOCALES } from '../i18n.js';
import { isTimeZone, TIME_ZONES, timeZoneFor } from '../../time-zones.js';
import { policyRules } from './password-set.js';

const NOTICES = new Set(['saved', 'password_changed', 'time_zone_saved']);
export const MAX_NAME_CHARS = 200;

function signedInUser(c: PortalContext) {
  const user = c.get('user');
  const session = c.get('session');
  if (!user || !session) throw new AppError('FORBIDDEN', 'not signed in');
  return { user, session };
}

function renderProfile(c: PortalContext, deps: PortalDeps, extra: Record<string, unknown> = {}, status: 200 | 422 = 200): Response {
  const { user } = signedInUser(c);
  const notice = c.req.query('notice');
  const zone = (extra.timeZoneDraft as string | undefined) ?? timeZoneFor(user, deps.ctx.config.PORTAL_TIME_ZONE);
  return renderPage(
    c,
    deps,
    'profile',
    {
      email: user.email,
      nameDraft: user.name ?? '',
      locales: LOCALES.map((l) => ({ value: l, labelKey: `lang.${l}`, selected: l === user.locale })),
      timeZones: TIME_ZONES.map((z) => ({ value: z, selected: z === zone })),
      // Not chosen yet: the browser's zone may be pre-selected by /assets/time-zone.js.
      offerBrowserZone: user.time_zone === null,
      hasPassword: user.password_hash !== null,
      rules: policyRules(deps),
      noticeKey: notice && NOTICES.has(notice) ? `profile.notice_${notice}` : null,
      ...extra,
    },
    status,
  );
}

/** /profile: name, language, time zone, password, and "sign out everywhere". */
export function registerProfileRoutes(app: Hono<PortalEnv>, deps: PortalDeps): void {
  const { ctx } = deps;

  app.get('/profile', (c) => renderProfile(c, deps));

  app.post('/profile', async (c) => {
    const { user } = signedInUser(c);
    const body = await c.req.parseBody();
    const name = field(body, 'name').replace(/\s+/g, ' ');
    const locale = field(body, 'locale');
    const timeZone = field(body, 'time_zone');
    const errors: string[] = [];
    if ([...name].length > MAX_NAME_CHARS) errors.push('profile.name_too_long');
    if (!isLocale(locale)) errors.push('profile.invalid_locale');
    if (!isTimeZone(timeZone)) errors.push('profile.invalid_time_zone');
    if (errors.length || !isLocale(locale)) {
      return renderProfile(c, deps, { errors, nameDraft: name, timeZoneDraft: isTimeZone(timeZone) ? timeZone : undefined }, 422);
    }
    await updateProfile(ctx.db, user.id, { name: name || null, locale, timeZone });
    return redirectTo(c, deps, '/profile?notice=saved');
  });

  // The first-visit offer in the layout: use the browser's zone, or keep the default (either way it is not offered again).
  app.post('/profile/time-zone', async (c) => {
    const { user } = signedInUser(c);
    const body = await c.req.parseBody();
    const back = safeReturnPath(field(body, 'return_to'));
    const timeZone = field(body, 'keep') ? ctx.config.PORTAL_TIME_ZONE : field(body, 'time_zone');
    if (!isTimeZone(timeZone)) return redirectTo(c, deps, back);
    await updateProfile(ctx.db, user.id, { timeZone });
    return redirectTo(c, deps, back);
  });

  app.post('/profile/password', async (c) => {
    const { user, session } = signedInUser(c);
    const body = await c.req.parseBody();
    const current = rawField(body, 'current_password');
    const password = rawField(body, 'password');
    const confirm = rawField(body, 'password_confirm');
    // Someone at an unlocked browser guessing the current password is throttled like set-password.
    const allowed = await deps.limiters.attempt('password', { ip: clientIp(c, deps), account: `user:${user.id}` });
    if (!allowed) return renderPage(c, deps, 'error', { titleKey: 'error.429_title', messageKey: 'error.429' }, 429);
    // An account that never had a password (signed in by a one-time link) sets its first one without a current one.
    if (user.password_hash !== null && !(await verifyPassword(user.password_hash, current))) {
      return renderProfile(c, deps, { passwordErrors: [{ key: 'profile.current_password_wrong' }] }, 422);
    }
    const violations = checkPasswordPolicy(ctx.config, password, user.email, confirm);
    if (violations.length) {
      const n: Record<string, number> = { too_short: ctx.config.PASSWORD_MIN_LENGTH, too_few_classes: ctx.config.PASSWORD_MIN_CLASSES };
      return renderProfile(c, deps, { passwordErrors: violations.map((v) => ({ key: `violation.${v}`, n: n[v] })) }, 422);
    }
    await changePassword(ctx, user.id, session.idHash, password, { notify: user.password_hash !== null });
    return redirectTo(c, deps, '/profile?notice=password_changed');
  });

  app.post('/profile/sign-out-everywhere', async (c) => {
    const { user } = signedInUser(c);
    await revokeUserSessions(ctx.db, user.id);
    clearCookie(c, deps, COOKIE.session);
    return redirectTo(c, deps, '/login?notice=signed_out_everywhere');
  });
}
