import type { Hono } from 'hono';
import { sendSignInLink, signInWithToken } from '../../auth/password-flows.js';
import { peekAuthToken, SIGN_IN_PURPOSES } from '../../db/queries/auth-tokens.js';
import { findUserByEmail } from '../../db/queries/users.js';
import { isValidEmail, normalizeEmail } from '../../core/address.js';
import { clientIp, field, redirectTo, renderPage, safeReturnPath, type PortalDeps, type PortalEnv } from '../http.js';
import { optionalNext, startSession, tooMany, withResponseFloor } from './auth.js';

/**
 * "Email me a sign-in link": for customers who only ever email support and
 * never chose a password. Asking gives the same page, status and timing
 * whether or not the address has an account, under the get-a-password rate
 * limit. The link (15 minutes, single use, only its SHA-256 stored) opens a
 * page with one button: mail scanners that fetch links must not use it up,
 * so only the POST signs in.
 */
export function registerSignInLinkRoutes(app: Hono<PortalEnv>, deps: PortalDeps): void {
  const { ctx } = deps;

  app.get('/login/link', (c) => {
    const next = optionalNext(c.req.query('next'));
    if (c.get('user')) return redirectTo(c, deps, next || '/requests');
    return renderPage(c, deps, 'login-link', { email: (c.req.query('email') ?? '').slice(0, 254), next });
  });

  app.post('/login/link', async (c) => {
    const started = performance.now();
    const body = await c.req.parseBody();
    const email = normalizeEmail(field(body, 'email'));
    const next = optionalNext(field(body, 'next'));
    if (!isValidEmail(email)) return renderPage(c, deps, 'login-link', { email, next, errors: ['form.invalid_email'] }, 422);
    if (!(await deps.limiters.attempt('password', { ip: clientIp(c, deps), account: email }))) return tooMany(c, deps);
    await withResponseFloor(deps, started, async () => {
      const user = await findUserByEmail(ctx.db, email);
      if (user) await sendSignInLink(ctx, user, next || null);
    });
    return renderPage(c, deps, 'check-email', { email, bodyKey: 'check_email.sign_in_body', againHref: '/login/link' });
  });

  app.get('/login/link/open', async (c) => {
    const token = c.req.query('token') ?? '';
    const valid = await peekAuthToken(ctx.db, token, SIGN_IN_PURPOSES);
    if (!valid) return renderPage(c, deps, 'login-link-invalid', {}, 410);
    return renderPage(c, deps, 'login-link-open', { token });
  });

  app.post('/login/link/open', async (c) => {
    const body = await c.req.parseBody();
    const token = field(body, 'token');
    const ip = clientIp(c, deps);
    // As for set-password links: only failed token checks count, and once limited every answer is 429.
    if (await deps.limiters.blocked('password', { ip })) return tooMany(c, deps);
    if (!(await peekAuthToken(ctx.db, token, SIGN_IN_PURPOSES))) {
      await deps.limiters.attempt('password', { ip });
      return renderPage(c, deps, 'login-link-invalid', {}, 410);
    }
    const used = await signInWithToken(ctx, token);
    if (!used) return renderPage(c, deps, 'login-link-invalid', {}, 410); // used up by a concurrent request
    await startSession(c, deps, used.user.id);
    return redirectTo(c, deps, safeReturnPath(used.returnTo));
  });
}
