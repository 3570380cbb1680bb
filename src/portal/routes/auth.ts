import type { Hono } from 'hono';
import { hashPassword, needsRehash, verifyPassword } from '../../auth/password.js';
import { sendPasswordLink } from '../../auth/password-flows.js';
import { createSession, destroySession } from '../../db/queries/sessions.js';
import { ensureUser, findUserByEmail, replacePasswordHash } from '../../db/queries/users.js';
import { isValidEmail, normalizeEmail } from '../../core/address.js';
import {
  COOKIE,
  clearCookie,
  clientIp,
  field,
  rawField,
  redirectTo,
  renderPage,
  safeReturnPath,
  sleep,
  writeCookie,
  type PortalContext,
  type PortalDeps,
  type PortalEnv,
} from '../http.js';

const LOGIN_NOTICES = new Set(['password_set', 'signed_out', 'expired', 'signed_out_everywhere']);

/** A `next` worth keeping: a local path, or "" (none, or anything that is not one of ours). */
export function optionalNext(value: unknown): string {
  return safeReturnPath(value, '');
}

/**
 * Runs `work` but answers no sooner than PORTAL_RESPONSE_FLOOR_MS after the
 * request started, so an address that triggers a database write and a mail
 * looks exactly as slow as one that triggers nothing.
 */
export async function withResponseFloor<T>(deps: PortalDeps, started: number, work: () => Promise<T>): Promise<T> {
  const result = await work();
  const elapsed = performance.now() - started;
  const floor = deps.ctx.config.PORTAL_RESPONSE_FLOOR_MS;
  if (elapsed > floor) {
    deps.ctx.log.warn(
      { elapsedMs: Math.round(elapsed), floorMs: floor },
      'portal response floor exceeded; timing may reveal whether an address exists',
    );
  } else {
    await sleep(floor - elapsed);
  }
  return result;
}

/** Signs the browser in as `userId`, always under a new session id. */
export async function startSession(c: PortalContext, deps: PortalDeps, userId: number): Promise<void> {
  const { ctx } = deps;
  // A new id on every sign-in: an id planted before login (session fixation) is worthless after it.
  const previous = c.get('session');
  if (previous) await destroySession(ctx.db, previous.idHash);
  const { id } = await createSession(ctx.db, ctx.config, userId);
  writeCookie(c, deps, COOKIE.session, id, Math.floor(ctx.config.SESSION_ABSOLUTE_MS / 1000));
  clearCookie(c, deps, COOKIE.csrf);
}

export function tooMany(c: PortalContext, deps: PortalDeps): Response {
  return renderPage(c, deps, 'error', { titleKey: 'error.429_title', messageKey: 'error.429' }, 429);
}

export function registerAuthRoutes(app: Hono<PortalEnv>, deps: PortalDeps): void {
  const { ctx } = deps;

  app.get('/', (c) => redirectTo(c, deps, c.get('user') ? '/requests' : '/login'));

  app.get('/login', (c) => {
    const next = safeReturnPath(c.req.query('next'));
    if (c.get('user')) return redirectTo(c, deps, next);
    const notice = c.req.query('notice');
    return renderPage(c, deps, 'login', {
      next,
      noticeKey: notice && LOGIN_NOTICES.has(notice) ? `login.${notice}` : null,
    });
  });

  app.post('/login', async (c) => {
    const body = await c.req.parseBody();
    const email = normalizeEmail(field(body, 'email'));
    const password = rawField(body, 'password');
    const next = safeReturnPath(field(body, 'next'));
    if (!(await deps.limiters.attempt('login', { ip: clientIp(c, deps), account: email }))) return tooMany(c, deps);

    const user = email && isValidEmail(email) ? await findUserByEmail(ctx.db, email) : undefined;
    // Unknown address, no password yet, or wrong password: one message, and the same argon2 work.
    const ok = await verifyPassword(user?.password_hash ?? null, password);
    if (!user || !ok) {
      return renderPage(c, deps, 'login', { next, email, errorKey: 'login.failed' }, 401);
    }
    await deps.limiters.resetAccount('login', email);
    if (user.password_hash && needsRehash(user.password_hash)) {
      await replacePasswordHash(ctx.db, user.id, await hashPassword(password));
    }
    await startSession(c, deps, user.id);
    return redirectTo(c, deps, next);
  });

  app.post('/logout', async (c) => {
    const session = c.get('session');
    if (session) await destroySession(ctx.db, session.idHash);
    clearCookie(c, deps, COOKIE.session);
    return redirectTo(c, deps, '/login?notice=signed_out');
  });

  app.get('/signup', (c) => {
    if (ctx.config.REGISTRATION === 'closed') return renderPage(c, deps, 'signup-closed');
    return renderPage(c, deps, 'signup', {});
  });

  app.post('/signup', async (c) => {
    if (ctx.config.REGISTRATION === 'closed') return renderPage(c, deps, 'signup-closed', {}, 403);
    const started = performance.now();
    const body = await c.req.parseBody();
    const name = field(body, 'name');
    const email = normalizeEmail(field(body, 'email'));
    const errors: string[] = [];
    if (!name || name.length > 200 || /[\p{Cc}]/u.test(name)) errors.push('signup.name_required');
    if (!isValidEmail(email)) errors.push('form.invalid_email');
    if (errors.length) return renderPage(c, deps, 'signup', { name, email, errors }, 422);
    if (!(await deps.limiters.attempt('password', { ip: clientIp(c, deps), account: email }))) return tooMany(c, deps);

    await withResponseFloor(deps, started, async () => {
      // Known or not, the same steps: ensure the account, mail a link. An
      // existing account keeps its name (a stranger must not relabel it) and
      // its owner gets a reset link, which is harmless to them.
      const { user } = await ensureUser(ctx.db, { email, name, locale: c.get('locale') });
      await sendPasswordLink(ctx, user);
    });
    return renderPage(c, deps, 'check-email', { email });
  });

  app.get('/password/new', (c) => {
    const email = (c.req.query('email') ?? '').slice(0, 254);
    return renderPage(c, deps, 'password-new', { email, next: optionalNext(c.req.query('next')) });
  });

  app.post('/password/new', async (c) => {
    const started = performance.now();
    const body = await c.req.parseBody();
    const email = normalizeEmail(field(body, 'email'));
    const next = optionalNext(field(body, 'next'));
    if (!isValidEmail(email)) return renderPage(c, deps, 'password-new', { email, next, errors: ['form.invalid_email'] }, 422);
    if (!(await deps.limiters.attempt('password', { ip: clientIp(c, deps), account: email }))) return tooMany(c, deps);
    await withResponseFloor(deps, started, async () => {
      const user = await findUserByEmail(ctx.db, email);
      if (user) await sendPasswordLink(ctx, user, next || null);
    });
    return renderPage(c, deps, 'check-email', { email });
  });
}
