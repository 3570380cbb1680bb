import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Hono } from 'hono';
import type { PortalEnv } from '../http.js';

const CSS = readFileSync(new URL('../../../templates/portal/assets/portal.css', import.meta.url));
/** Content hash in the URL: browsers may cache the file for a year and still see every change. */
export const CSS_VERSION = createHash('sha256').update(CSS).digest('hex').slice(0, 12);

/**
 * The portal's only script: progressive enhancement that offers the browser's
 * time zone (the pages work the same without it). A file, never inline, so
 * the CSP allows scripts from our own origin only.
 */
const TIME_ZONE_JS = readFileSync(new URL('../../../templates/portal/assets/time-zone.js', import.meta.url));
export const JS_VERSION = createHash('sha256').update(TIME_ZONE_JS).digest('hex').slice(0, 12);

export function registerAssetRoutes(app: Hono<PortalEnv>): void {
  app.get('/assets/portal.css', (c) =>
    c.body(new Uint8Array(CSS), 200, {
      'Content-Type': 'text/css; charset=utf-8',
      'Cache-Control': c.req.query('v') === CSS_VERSION ? 'public, max-age=31536000, immutable' : 'public, max-age=300',
    }),
  );
  app.get('/assets/time-zone.js', (c) =>
    c.body(new Uint8Array(TIME_ZONE_JS), 200, {
      'Content-Type': 'text/javascript; charset=utf-8',
      'Cache-Control': c.req.query('v') === JS_VERSION ? 'public, max-age=31536000, immutable' : 'public, max-age=300',
    }),
  );
}
