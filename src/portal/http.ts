import { ipKey } from '../net/ip-key.js';
import type { Context } from 'hono';
import { getConnInfo } from '@hono/node-server/conninfo';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { PortalLimiters } from '../auth/rate-limit.js';
import { hmac, randomSecret, safeEqual } from '../core/secrets.js';
import type { Session } from '../db/queries/sessions.js';
import type { AppContext } from '../context.js';
import type { Locale, UserRow } from '../db/database.js';
import { CSS_VERSION, JS_VERSION } from './routes/assets.js';
import { timeZoneFor } from '../time-zones.js';
import type { Views } from './views.js';

/** The <title> of each page (the request page builds its own). */
const PAGE_TITLES: Record<string, string> = {
  login: 'login.title',
  signup: 'signup.title',
  'signup-closed': 'signup.closed_title',
  'password-new': 'password_new.title',
  'check-email': 'check_email.title',
  'password-set': 'password_set.title',
  'password-set-invalid': 'password_set.invalid_title',
  profile: 'profile.title',
  requests: 'requests.title',
  satisfaction: 'csat.title',
  'login-link': 'login_link.title',
  'login-link-open': 'login_link.open_title',
  'login-link-invalid': 'password_set.invalid_title',
  'request-new': 'request_new.title',
  'request-confirm': 'request_new.confirm_title',
  'request-confirm-invalid': 'password_set.invalid_title',
};

export interface PortalDeps {
  ctx: AppContext;
  views: Views;
  limiters: PortalLimiters;
}

export interface PortalVariables {
  session: Session | null;
  user: UserRow | null;
  locale: Locale;
}

export type PortalEnv = { Variables: PortalVariables };
export type PortalContext = Context<PortalEnv>;

export const COOKIE = { session: 'rl_session', csrf: 'rl_csrf', lang: 'rl_lang' } as const;
type CookieName = (typeof COOKIE)[keyof typeof COOKIE];

/**
 * Cookies are HttpOnly and SameSite=Lax always; with an https PUBLIC_URL
 * they are also Secure and carry the __Host- prefix (no Domain, Path=/), so a
 * sibling subdomain cannot plant or overwrite them.
 */
export function readCookie(c: Context, deps: PortalDeps, name: CookieName): string | undefined {
  return deps.ctx.config.secureCookies ? getCookie(c, name, 'host') : getCookie(c, name);
}

export function writeCookie(c: Context, deps: PortalDeps, name: CookieName, value: string, maxAgeSeconds?: number): void {
  setCookie(c, name, value, {
    path: '/',
    httpOnly: true,
    sameSite: 'Lax',
    secure: deps.ctx.config.secureCookies,
    ...(deps.ctx.config.secureCookies ? { prefix: 'host' as const } : {}),
    ...(maxAgeSeconds !== undefined ? { maxAge: maxAgeSeconds } : {}),
  });
}

export function clearCookie(c: Context, deps: PortalDeps, name: CookieName): void {
  deleteCookie(c, name, {
    path: '/',
    secure: deps.ctx.config.secureCookies,
    ...(deps.ctx.config.secureCookies ? { prefix: 'host' as const } : {}),
  });
}

/**
 * The CSRF token for the current page: the session's own token when signed
 * in, otherwise an HMAC of a random pre-session cookie (set here on first
 * need) so that anonymous forms — login, sign-up, get a password — carry one too.
 */
export function csrfTokenFor(c: PortalContext, deps: PortalDeps): string {
  const session = c.get('session');
  if (session) return session.csrfToken;
  let anon = readCookie(c, deps, COOKIE.csrf);
  if (!anon || !/^[A-Za-z0-9_-]{22}$/.test(anon)) {
    anon = randomSecret();
    writeCookie(c, deps, COOKIE.csrf, anon);
  }
  return hmac(deps.ctx.config.SECRET_KEY, 'csrf', anon);
}

/** The expected token for a submitted form, or null when none can be valid (no session, no pre-session cookie). */
export function expectedCsrfToken(c: PortalContext, deps: PortalDeps): string | null {
  const session = c.get('session');
  if (session) return session.csrfToken;
  const anon = readCookie(c, deps, COOKIE.csrf);
  return anon ? hmac(deps.ctx.config.SECRET_KEY, 'csrf', anon) : null;
}

/** Whether a submitted `_csrf` value is this session's (or pre-session's) token. */
export function csrfTokenMatches(c: PortalContext, deps: PortalDeps, submitted: unknown): boolean {
  const expected = expectedCsrfToken(c, deps);
  return typeof submitted === 'string' && expected !== null && safeEqual(submitted, expected);
}

/**
 * The client key for rate limits: the address (IPv6: its /64, see net/ip-key.ts).
 * Only with TRUST_PROXY is X-Forwarded-For believed (its right-most hop).
 */
export function clientIp(c: Context, deps: PortalDeps): string {
  if (deps.ctx.config.TRUST_PROXY) {
    const forwarded = c.req.header('x-forwarded-for');
    const last = forwarded
      ?.split(',')
      .map((s) => s.trim())
      .filter(Boolean)
      .pop();
    if (last) return ipKey(last);
  }
  try {
    return ipKey(getConnInfo(c).remote.address ?? 'unknown');
  } catch {
    return 'unknown';
  }
}

/** Renders a page inside the layout with everything @root needs. */
export function renderPage(
  c: PortalContext,
  deps: PortalDeps,
  page: string,
  data: Record<string, unknown> = {},
  status: ContentfulStatusCode = 200,
): Response {
  const locale = c.get('locale');
  const user = c.get('user');
  const titleKey = PAGE_TITLES[page] ?? (typeof data.titleKey === 'string' ? data.titleKey : null);
  const html = deps.views.render(page, {
    pageTitle: titleKey ? deps.views.t(locale, titleKey) : null,
    ...data,
    cssVersion: CSS_VERSION,
    jsVersion: JS_VERSION,
    locale,
    otherLocale: locale === 'en' ? 'ja' : 'en',
    // BRAND_NAME when set, else the catalogue's "Support" / 「サポート」.
    brandName: deps.ctx.config.BRAND_NAME ?? deps.views.t(locale, 'app.name'),
    registrationOpen: deps.ctx.config.REGISTRATION === 'open',
    publicUrl: deps.ctx.config.PUBLIC_URL,
    timeZone: timeZoneFor(user, deps.ctx.config.PORTAL_TIME_ZONE),
    // A signed-in user who never chose a zone is offered the browser's (templates/portal/partials/time-zone-offer.hbs).
    timeZoneOffer: user !== null && user.time_zone === null,
    csrfToken: csrfTokenFor(c, deps),
    user: user ? { email: user.email, name: user.name, isStaff: user.role === 'staff' } : null,
    // The switcher comes back to the same page; only our own path and query, never a full URL.
    returnTo: safeReturnPath(new URL(c.req.url).pathname + new URL(c.req.url).search),
  });
  c.header('Cache-Control', 'no-store');
  return c.html(html, status);
}

/** Redirects to a path under PUBLIC_URL (303: the follow-up is always a GET). */
export function redirectTo(c: Context, deps: PortalDeps, path: string): Response {
  return c.redirect(deps.ctx.config.PUBLIC_URL + path, 303);
}

/** Only a local absolute path survives: "/x?y". Anything else (//host, scheme:, backslashes) becomes "/requests". */
export function safeReturnPath(value: unknown, fallback = '/requests'): string {
  if (typeof value !== 'string' || value.length > 2000) return fallback;
  if (!value.startsWith('/') || value.startsWith('//') || /[\\\r\n\t]/.test(value)) return fallback;
  return value;
}

/** A form field as a trimmed string ("" when missing or a file). */
export function field(body: Record<string, unknown>, name: string): string {
  const v = body[name];
  return typeof v === 'string' ? v.trim() : '';
}

/** Like field() but untrimmed: passwords keep their spaces. */
export function rawField(body: Record<string, unknown>, name: string): string {
  const v = body[name];
  return typeof v === 'string' ? v : '';
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
