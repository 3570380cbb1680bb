import { mkdirSync } from 'node:fs';
import { type Browser } from 'playwright-core';
import { launchChromium } from '../support/chromium.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addOrganizationMember, createOrganization } from '../../src/db/queries/organizations.js';
import { makeCsatToken } from '../../src/mail/tokens.js';
import { axeFindings } from './axe.js';
import { latestMailToken, seedTicket, seedUser, startPortalApp, uniqueEmail, type PortalTestApp } from './support.js';

/**
 * axe-core in Chromium over every portal page, in English and in Japanese, at
 * desktop width: sign-in (also with an error), sign-up, get-a-password and its
 * "check your email" page, set password (a real token from the mail, also with
 * policy errors), sign-in link request and open, submit a request signed out
 * (and its confirmation page) and signed in (also with errors), My activity's
 * tabs (mine with the time-zone offer, CC'd, organization), a request thread
 * with messages, an attachment and CCs, the profile, the satisfaction pages,
 * 404 and 410 pages, and the page after the language switch. No serious or
 * critical finding may remain; each one found is listed with its page.
 *
 * With SCREENSHOTS=1 it also writes the desktop screenshots in docs/screenshots/.
 */
const SCREENSHOTS = process.env.SCREENSHOTS === '1' ? new URL('../../docs/screenshots/', import.meta.url) : null;
const DESKTOP = { width: 1200, height: 800 };

let app: PortalTestApp;
let browser: Browser;
beforeAll(async () => {
  app = await startPortalApp({ RATE_LOGIN_PER_IP: '1000', RATE_PASSWORD_PER_IP: '1000', PORTAL_TIME_ZONE: 'UTC', REGISTRATION: 'open' });
  browser = await launchChromium();
  if (SCREENSHOTS) mkdirSync(SCREENSHOTS, { recursive: true });
}, 120_000);
afterAll(async () => {
  await browser?.close();
  await app?.teardown();
});

const SEED = {
  en: {
    name: 'Hanako Tanaka',
    subject: 'Invoice for November',
    peer: 'Delivery date for order 1042',
    reply: 'We have re-issued the invoice.',
    old: 'Password reset',
  },
  ja: {
    name: '田中 花子',
    subject: '11月分の請求書について',
    peer: '注文1042の納期',
    reply: '請求書を再発行しました。',
    old: 'パスワードの再設定',
  },
};

/** The people and requests one language's walk needs, all stored through the production queries. */
async function seed(locale: 'en' | 'ja') {
  const db = app.ctx.db;
  const s = SEED[locale];
  const user = await seedUser(db, { name: s.name, locale, email: uniqueEmail('hanako') });
  const peer = await seedUser(db, { locale });
  const cc = await seedUser(db, { name: 'Jiro Sato', locale });
  const staff = await seedUser(db, { name: 'Ken Ito', role: 'staff', locale });
  const org = await createOrganization(db, { name: `Example ${uniqueEmail('org')}`, shared: true, domains: [] });
  for (const u of [user, peer]) await addOrganizationMember(db, org.id, u.id);
  const thread = await seedTicket(db, {
    requesterId: user.id,
    subject: s.subject,
    ccIds: [cc.id],
    messages: [
      { text: 'Hello, I need help.' },
      { authorId: staff.id, text: s.reply, attachment: { filename: 'invoice.txt', content: 'INVOICE' } },
    ],
  });
  await seedTicket(db, { requesterId: peer.id, subject: s.peer, ccIds: [user.id] });
  const solved = await seedTicket(db, { requesterId: user.id, subject: s.peer, status: 'solved' });
  const closed = await seedTicket(db, { requesterId: user.id, subject: s.old, status: 'closed' });
  const csat = (ticketId: number) => makeCsatToken(app.ctx.config.SECRET_KEY, { ticketId, userId: user.id });
  return {
    user,
    thread: thread.ticket.id,
    solved: solved.ticket.id,
    closed: closed.ticket.id,
    csatToken: csat(solved.ticket.id),
    closedToken: csat(closed.ticket.id),
  };
}

describe('axe-core over every portal page', () => {
  for (const locale of ['en', 'ja'] as const) {
    it(`has no serious or critical finding on any page (${locale})`, async () => {
      const data = await seed(locale);
      const context = await browser.newContext({
        locale: locale === 'ja' ? 'ja-JP' : 'en-US',
        timezoneId: 'Asia/Tokyo',
        viewport: DESKTOP,
      });
      const page = await context.newPage();
      const findings: string[] = [];
      const visited: string[] = [];
      /** axe on what the page shows now; optionally its screenshot. */
      const check = async (label: string, shot?: string) => {
        visited.push(label);
        for (const f of await axeFindings(page)) findings.push(`${locale} ${label}: ${f}`);
        if (SCREENSHOTS && shot) {
          const path = new URL(`portal-${shot}${locale === 'ja' ? '-ja' : ''}.png`, SCREENSHOTS).pathname;
          await page.screenshot({ path, fullPage: true });
        }
      };
      const visit = async (path: string, label = path, shot?: string) => {
        const res = await page.goto(app.base + path);
        await check(`${label} [${res?.status()}]`, shot);
      };
      // The browser's own `required` check would stop an empty form before the server's messages show.
      const submitAnyway = (form: string) => page.locator(form).evaluate((f) => f.setAttribute('novalidate', ''));
      const lang = () => page.locator('html').getAttribute('lang');

      // Signed out.
      await visit('/login?notice=expired', '/login (session expired)');
      await visit('/login');
      expect(await lang()).toBe(locale);
      await page.locator('#email').fill(data.user.email);
      await page.locator('#password').fill('not-the-password');
      await page.locator('main form button[type=submit]').click();
      await page.locator('main [role=alert]').waitFor();
      await check('/login (error)');
      await visit('/signup');
      await visit('/password/new');
      await page.locator('#email').fill(data.user.email);
      await page.locator('main form button[type=submit]').click();
      await page.locator('#check-email').waitFor();
      await check('/password/new (check your email)');
      const setToken = await latestMailToken(app.ctx.db, data.user.email, 'password_setup', app.ctx.config.SECRET_KEY);
      await visit(`/password/set?token=${setToken}`, '/password/set');
      await page.locator('#password').fill('short');
      await page.locator('#password_confirm').fill('other');
      await page.locator('main form button[type=submit]').click();
      await page.locator('#password-errors').waitFor();
      await check('/password/set (errors)');
      await visit('/password/set?token=used-or-unknown', '/password/set (410)');
      await visit('/login/link', '/login/link', 'login-link');
      await page.locator('#email').fill(data.user.email);
      await page.locator('main form button[type=submit]').click();
      await page.locator('#check-email').waitFor();
      await check('/login/link (check your email)');
      await visit('/login/link/open?token=used-or-unknown', '/login/link/open (410)');
      await visit('/requests/new', '/requests/new (signed out)');
      const visitor = uniqueEmail('visitor');
      await page.locator('#name').fill('Taro Yamada');
      await page.locator('#email').fill(visitor);
      await page.locator('#subject').fill('Question about my order');
      await page.locator('#description').fill('When will it ship?');
      await page.locator('main form button[type=submit]').click();
      await page.locator('#check-email').waitFor();
      await check('/requests/new (check your email)');
      const confirm = await latestMailToken(app.ctx.db, visitor, 'request_confirmation', app.ctx.config.SECRET_KEY);
      await visit(`/requests/new/confirm?token=${confirm}`, '/requests/new/confirm');
      await visit('/requests/new/confirm?token=used-or-unknown', '/requests/new/confirm (410)');
      await visit(`/satisfaction/${data.csatToken}`, '/satisfaction (choose)');
      await visit(`/satisfaction/${data.csatToken}/good`, '/satisfaction/good', 'satisfaction');
      await page.locator('#comment').fill('Quick and friendly.');
      await page.locator('main form button[type=submit]').click();
      await page.locator('#csat-saved').waitFor();
      await check('/satisfaction (comment saved)');
      await visit(`/satisfaction/${data.closedToken}/bad`, '/satisfaction (410)');
      await visit('/no-such-page', '404');

      // Signed in through a sign-in link (the open page is checked on the way).
      const signIn = await latestMailToken(app.ctx.db, data.user.email, 'sign_in_link', app.ctx.config.SECRET_KEY);
      await visit(`/login/link/open?token=${signIn}`, '/login/link/open');
      await page.locator('main form button[type=submit]').click();
      await page.waitForURL(/\/requests$/);
      await page.locator('#time-zone-offer').waitFor({ state: 'visible' });
      await check('/requests (with the time-zone offer)');
      await page.locator('#time-zone-offer button[name=keep]').click();
      await page.locator('#time-zone-offer').waitFor({ state: 'detached' });
      await visit('/requests');
      await visit('/requests?filter=cc');
      await visit('/requests?filter=org', '/requests?filter=org', 'requests-org');
      await visit(`/requests?q=${encodeURIComponent(SEED[locale].subject.slice(0, 3))}`, '/requests?q=');
      await visit(`/requests/${data.thread}`, '/requests/:id');
      await visit(`/requests/${data.solved}`, '/requests/:id (solved, rated)');
      await visit(`/requests/${data.closed}`, '/requests/:id (closed)');
      await visit('/requests/new', '/requests/new (signed in)', 'request-new');
      await submitAnyway('main form');
      await page.locator('main form button[type=submit]').click();
      await page.locator('main [role=alert]').waitFor();
      await check('/requests/new (errors)');
      await visit('/profile');
      await visit(`/requests/${2 ** 31 - 1}`, '404 (signed in)');

      // The language switch: the other language's page is checked too.
      await page.goto(`${app.base}/requests`);
      const other = locale === 'en' ? 'ja' : 'en';
      await page.locator(`.lang-switch button[value=${other}]`).click();
      await page.waitForFunction(`document.documentElement.lang === '${other}'`);
      await check(`/requests (switched to ${other})`);

      await context.close();
      console.log([`axe (${locale}): ${visited.length} pages, ${findings.length} serious or critical findings`, ...findings].join('\n'));
      expect(findings).toEqual([]);
    }, 120_000);
  }
});
