import type { MiddlewareHandler } from 'hono';
import { renderPage, type PortalDeps, type PortalEnv } from '../http.js';

/**
 * The portal only works on PUBLIC_URL's host: its stylesheet, CSP `'self'`,
 * cookies and the CSRF Origin check are all tied to it. Opened on another name
 * for the same server (localhost vs 127.0.0.1), it used to show an unstyled
 * page whose forms failed without a word. So a GET or HEAD there is sent to
 * the same path on PUBLIC_URL (308), and anything else gets a page saying
 * where the portal really is (421 Misdirected Request) — never a silent failure.
 *
 * Behind a reverse proxy the proxy must pass the browser's Host (nginx:
 * `proxy_set_header Host $host`), or, with TRUST_PROXY, X-Forwarded-Host.
 */
export function canonicalHost(deps: PortalDeps): MiddlewareHandler<PortalEnv> {
  const config = deps.ctx.config;
  const publicUrl = new URL(config.PUBLIC_URL);
  return async (c, next) => {
    const forwarded = config.TRUST_PROXY ? c.req.header('x-forwarded-host')?.split(',').pop()?.trim() : undefined;
    const host = normaliseHost(publicUrl.protocol, forwarded || c.req.header('host'));
    // No Host at all (HTTP/1.0 tools) cannot have come from a browser's address bar: nothing to correct.
    if (host === null || host === publicUrl.host) return next();
    const method = c.req.method;
    if (method === 'GET' || method === 'HEAD') {
      const url = new URL(c.req.url);
      return c.redirect(`${config.PUBLIC_URL}${url.pathname}${url.search}`, 308);
    }
    deps.ctx.log.info(
      { host, publicHost: publicUrl.host, path: c.req.path },
      "portal form sent to a host other than PUBLIC_URL's; refused with an explanation",
    );
    return renderPage(c, deps, 'error', { titleKey: 'error.host_title', messageKey: 'error.host', host }, 421);
  };
}

/** "LocalHost:80" under http: → "localhost"; the form URL.host uses, so it compares with PUBLIC_URL's. */
function normaliseHost(protocol: string, raw: string | undefined): string | null {
  if (!raw) return null;
  try {
    return new URL(`${protocol}//${raw}`).host;
  } catch {
    return raw.toLowerCase();
  }
}
