import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../security/support/browser.js';
import { GOOD_PASSWORD, seedUser, startPortalApp, type PortalTestApp } from './support.js';

/**
 * PUBLIC_URL is http://127.0.0.1:<port>; a newcomer opens http://localhost:<port>.
 * The CSP, cookies and CSRF Origin check only work on PUBLIC_URL's host, so the
 * page used to come up unstyled with a Sign in button that did nothing.
 */
let app: PortalTestApp;
let port: number;

beforeAll(async () => {
  app = await startPortalApp();
  port = Number(new URL(app.base).port);
});
afterAll(() => app?.teardown());

/** A raw request with our own Host header (fetch does not let a test choose it). */
function send(method: string, path: string, host: string, headers: Record<string, string> = {}, body = '') {
  return new Promise<{ status: number; location?: string; html: string; csp?: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers: { host, ...headers } }, (res) => {
      let html = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (html += d));
      res.on('end', () =>
        resolve({
          status: res.statusCode!,
          location: res.headers.location,
          html,
          csp: res.headers['content-security-policy'] as string | undefined,
        }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe("a portal request on a host other than PUBLIC_URL's", () => {
  it('GET and HEAD are redirected (308) to the same path and query on PUBLIC_URL', async () => {
    const r = await send('GET', '/login?next=%2Frequests%2F7', `localhost:${port}`);
    expect(r.status).toBe(308);
    expect(r.location).toBe(`${app.base}/login?next=%2Frequests%2F7`);
    expect((await send('HEAD', '/requests', `LOCALHOST:${port}`)).location).toBe(`${app.base}/requests`);
  });

  it('a POST gets a clear page naming the right address (421), in English and Japanese', async () => {
    const form = { 'content-type': 'application/x-www-form-urlencoded', origin: `http://localhost:${port}` };
    const en = await send('POST', '/login', `localhost:${port}`, form, 'email=a%40b.test&password=x');
    expect(en.status).toBe(421);
    expect(en.html).toContain('Wrong address for this site');
    expect(en.html).toContain(`You opened the portal at localhost:${port}, but its address is ${app.base}.`);
    expect(en.html).toContain(`href="${app.base}/"`);
    // Styled even there: the stylesheet comes from PUBLIC_URL's origin.
    expect(en.csp).toContain(`style-src 'self' ${app.base}`);
    const ja = await send('POST', '/password/new', `localhost:${port}`, { ...form, 'accept-language': 'ja' }, 'email=a%40b.test');
    expect(ja.status).toBe(421);
    expect(ja.html).toContain('このサイトのアドレスが違います');
    expect(ja.html).toContain(`正しいアドレスは ${app.base} です`);
  });

  it("leaves PUBLIC_URL's own host and the health check alone", async () => {
    expect((await send('GET', '/login', `127.0.0.1:${port}`)).status).toBe(200);
    expect((await send('GET', '/healthz', `localhost:${port}`)).status).toBe(200);
  });

  it('in Chromium: a newcomer who opens localhost lands on PUBLIC_URL, styled, and can sign in', async () => {
    const user = await seedUser(app.ctx.db);
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const blocked: string[] = [];
      // CSP refusals are what made the page unstyled and the button dead (a missing favicon is not our concern).
      page.on('console', (m) => /Content Security Policy|Refused/i.test(m.text()) && blocked.push(m.text()));
      await page.goto(`http://localhost:${port}/login`);
      expect(page.url()).toBe(`${app.base}/login`);
      // The stylesheet applied (CSP used to block it on the other host name): the body font is ours, not the default.
      expect(await page.evaluate('getComputedStyle(document.body).fontFamily')).not.toMatch(/^"?Times/);
      await page.getByLabel('Email address').fill(user.email);
      await page.getByLabel('Password').fill(GOOD_PASSWORD);
      await Promise.all([page.waitForURL(`${app.base}/requests`), page.getByRole('button', { name: 'Sign in' }).click()]);
      expect(blocked).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
