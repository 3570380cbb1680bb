import { createServer, type Server } from 'node:http';
import { type BrowserContext, type Page } from 'playwright-core';

/**
 * Real Chromium, plus the instruments that tell whether hostile content ran:
 * dialogs (alert/confirm/prompt), console output, page errors, every network
 * request, CSP violation reports, and a "beacon" HTTP server that payloads
 * try to reach (fetch, image, stylesheet). Any of them firing is a finding.
 */
export { launchChromium } from '../../support/chromium.js';

export interface Beacon {
  url: string;
  hits: string[];
  stop(): Promise<void>;
}

/** An HTTP server that records every request: a payload reaching it proves script (or a remote load) ran. */
export async function startBeacon(): Promise<Beacon> {
  const hits: string[] = [];
  const server: Server = createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    res.writeHead(204, { 'access-control-allow-origin': '*' });
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export interface Watch {
  dialogs: string[];
  console: string[];
  pageErrors: string[];
  requests: string[];
  /** CSP violations reported by every document of the context (only where CSP is enforced). */
  violations: string[];
}

// Reported through a binding, so violations of a page survive navigating away from it.
const VIOLATION_RECORDER = `
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__rlViolation(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sample || ''));
  });
`;

/** Instruments a context before any page of it loads. */
export async function watchContext(context: BrowserContext): Promise<Watch> {
  const watch: Watch = { dialogs: [], console: [], pageErrors: [], requests: [], violations: [] };
  await context.exposeFunction('__rlViolation', (v: string) => void watch.violations.push(v));
  await context.addInitScript({ content: VIOLATION_RECORDER });
  const instrument = (page: Page) => {
    page.on('dialog', (d) => {
      watch.dialogs.push(`${d.type()}: ${d.message()}`);
      void d.dismiss().catch(() => undefined);
    });
    page.on('console', (m) => watch.console.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => watch.pageErrors.push(e.message));
    page.on('request', (r) => watch.requests.push(r.url()));
  };
  context.on('page', instrument);
  for (const p of context.pages()) instrument(p);
  return watch;
}

/** Signs in through the portal's own form. */
export async function signIn(page: Page, base: string, email: string, password: string): Promise<void> {
  await page.goto(`${base}/login`);
  await page.getByLabel('Email address').fill(email);
  await page.getByLabel('Password').fill(password);
  await Promise.all([page.waitForURL(`${base}/requests`), page.getByRole('button', { name: 'Sign in' }).click()]);
}

/**
 * Active content left in the DOM: script-bearing elements, event-handler
 * attributes, and javascript:/vbscript:/data:text/html URLs in any
 * navigating attribute. Runs in the page (no DOM types in this project's TS lib).
 */
export const ACTIVE_CONTENT_PROBE = `(() => {
  const found = [];
  // The portal's own script is a file from its origin (/assets/time-zone.js); anything else is active content.
  for (const el of document.querySelectorAll('script:not([src*="/assets/time-zone.js?v="]), iframe, frame, object, embed, applet, base, meta[http-equiv], form[action^="javascript" i], svg script, math')) {
    found.push('<' + el.tagName.toLowerCase() + '>');
  }
  for (const el of document.querySelectorAll('*')) {
    for (const a of el.attributes) {
      const name = a.name.toLowerCase();
      const value = a.value.replace(/[\\s\\u0000-\\u001f]+/g, '').toLowerCase();
      if (name.startsWith('on')) found.push(el.tagName.toLowerCase() + '[' + name + ']');
      if (['href', 'src', 'action', 'formaction', 'data', 'xlink:href', 'srcdoc', 'background', 'poster'].includes(name)
          && (/^(javascript|vbscript|livescript):/.test(value) || /^data:(text\\/html|image\\/svg|application\\/xhtml)/.test(value) || name === 'srcdoc')) {
        found.push(el.tagName.toLowerCase() + '[' + name + '=' + a.value.slice(0, 60) + ']');
      }
    }
  }
  return found;
})()`;
