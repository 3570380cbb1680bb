import type { Hono } from 'hono';
import { setPasswordWithToken } from '../../auth/password-flows.js';
import { checkPasswordPolicy } from '../../auth/policy.js';
import { peekAuthToken } from '../../db/queries/auth-tokens.js';
import { findUserById } from '../../db/queries/users.js';
import { tooMany } from './auth.js';
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

/** The rules shown on the page, in the order they are checked. */
export function policyRules(deps: PortalDeps): Array<{ key: string; n?: number }> {
  const cfg = deps.ctx.config;
  const rules: Array<{ key: string; n?: number }> = [{ key: 'policy.min_length', n: cfg.PASSWORD_MIN_LENGTH }];
  if (cfg.PASSWORD_MIN_CLASSES > 0) rules.push({ key: 'policy.classes', n: cfg.PASSWORD_MIN_CLASSES });
  if (cfg.PASSWORD_FORBID_EMAIL_LOCAL) rules.push({ key: 'policy.no_email' });
  return rules;
}

function invalidLink(c: PortalContext, deps: PortalDeps): Response {
  return renderPage(c, deps, 'password-set-invalid', {}, 410);
}

export function registerPasswordSetRoutes(app: Hono<PortalEnv>, deps: PortalDeps): void {
  const { ctx } = deps;

  app.get('/password/set', async (c) => {
    const token = c.req.query('token') ?? '';
    const valid = await peekAuthToken(ctx.db, token);
    const user = valid ? await findUserById(ctx.db, valid.userId) : undefined;
    if (!valid || !user) return invalidLink(c, deps);
    return renderPage(c, deps, 'password-set', { token, email: user.email, rules: policyRules(deps) });
  });

  app.post('/password/set', async (c) => {
    const body = await c.req.parseBody();
    const token = c.req.query('token') ?? field(body, 'token');
    const password = rawField(body, 'password');
    const confirm = rawField(body, 'password_confirm');
    const ip = clientIp(c, deps);
    // Checked before the token: once an address is limited, a right guess gets the same 429 as a wrong one.
    if (await deps.limiters.blocked('password', { ip })) return tooMany(c, deps);
    const valid = await peekAuthToken(ctx.db, token);
    const user = valid ? await findUserById(ctx.db, valid.userId) : undefined;
    if (!valid || !user) {
      // Only failed token checks count: the limit is against guessing links. A holder of a valid link
      // who trips over the password policy a few times must not be locked out for an hour.
      await deps.limiters.attempt('password', { ip });
      return invalidLink(c, deps);
    }

    const violations = checkPasswordPolicy(ctx.config, password, user.email, confirm);
    if (violations.length) {
      const n: Record<string, number> = {
        too_short: ctx.config.PASSWORD_MIN_LENGTH,
        too_few_classes: ctx.config.PASSWORD_MIN_CLASSES,
      };
      return renderPage(
        c,
        deps,
        'password-set',
        {
          token,
          email: user.email,
          rules: policyRules(deps),
          violations: violations.map((v) => ({ key: `violation.${v}`, n: n[v] })),
        },
        422,
      );
    }
    const updated = await setPasswordWithToken(ctx, token, password);
    if (!updated) return invalidLink(c, deps); // used up by a concurrent request
    // Every session of this user is gone, possibly including this browser's.
    if (c.get('user')?.id === updated.user.id) clearCookie(c, deps, COOKIE.session);
    // Where they were going when they asked for the link: kept in the token row, checked again here.
    const next = updated.returnTo ? safeReturnPath(updated.returnTo, '') : '';
    return redirectTo(c, deps, `/login?notice=password_set${next ? `&next=${encodeURIComponent(next)}` : ''}`);
  });
}
