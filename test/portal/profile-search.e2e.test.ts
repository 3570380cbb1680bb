import { type Browser, type Page } from 'playwright-core';
import { launchChromium } from '../support/chromium.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addOrganizationMember, createOrganization } from '../../src/db/queries/organizations.js';
import { axeFindings } from './axe.js';
import { GOOD_PASSWORD, seedTicket, seedUser, startPortalApp, uniqueEmail, type PortalTestApp } from './support.js';

/**
 * Profile, time zone and search in a real Chromium (desktop and 390 px wide):
 * the time-zone script runs under the portal's CSP and offers the browser's
 * zone, the profile pre-selects it, and the search box finds Japanese text.
 */

let app: PortalTestApp;
let browser: Browser;
beforeAll(async () => {
  app = await startPortalApp({ RATE_LOGIN_PER_IP: '1000', PORTAL_TIME_ZONE: 'UTC' });
  browser = await launchChromium();
}, 120_000);
afterAll(async () => {
  await browser?.close();
  await app?.teardown();
});

async function signIn(width: number, email: string): Promise<{ page: Page; violations: string[] }> {
  const context = await browser.newContext({ locale: 'en-US', timezoneId: 'Asia/Tokyo', viewport: { width, height: 900 } });
  const page = await context.newPage();
  const violations: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
  });
  await page.goto(`${app.base}/login`);
  await page.getByLabel('Email address').fill(email);
  await page.getByLabel('Password').fill(GOOD_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/requests$/);
  return { page, violations };
}

describe('profile and search in Chromium', () => {
  for (const width of [1200, 390]) {
    it(`offers the browser's time zone, saves it, and searches Japanese text (${width} px)`, async () => {
      const user = await seedUser(app.ctx.db);
      const invoice = await seedTicket(app.ctx.db, { requesterId: user.id, subject: '請求書の再発行について' });
      await seedTicket(app.ctx.db, { requesterId: user.id, subject: 'Delivery question' });
      const { page, violations } = await signIn(width, user.email);

      const offer = page.locator('#time-zone-offer');
      await offer.waitFor({ state: 'visible' });
      expect(await offer.textContent()).toContain('Asia/Tokyo');
      await page.getByRole('button', { name: "Use my browser's time zone" }).click();
      await page.getByText('Times are shown in Asia/Tokyo.').waitFor();
      expect(await page.locator('#time-zone-offer').count()).toBe(0);
      const row = await app.ctx.db.selectFrom('users').select('time_zone').where('id', '=', user.id).executeTakeFirstOrThrow();
      expect(row.time_zone).toBe('Asia/Tokyo');

      await page.getByRole('searchbox', { name: 'Search' }).fill('請求書');
      await page.getByRole('searchbox', { name: 'Search' }).press('Enter');
      await page.getByText('Requests containing “請求書”').waitFor();
      const links = await page.locator('table.requests tbody a').allTextContents();
      expect(links).toEqual(['請求書の再発行について']);
      expect(page.url()).toContain(`q=${encodeURIComponent('請求書')}`);
      await page.getByLabel('Sort by').selectOption('created');
      await page.getByRole('button', { name: 'Filter' }).click();
      await page.waitForURL(/sort=created/);
      expect(await page.locator('table.requests tbody a').allTextContents()).toEqual(['請求書の再発行について']);
      void invoice;

      await page.getByRole('link', { name: 'Profile' }).click();
      await page.getByRole('heading', { name: 'Profile', level: 1 }).waitFor();
      expect(await page.getByLabel('Time zone').inputValue()).toBe('Asia/Tokyo');
      // Nothing overflows sideways on a phone.
      expect(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth + 1')).toBe(true);
      expect(violations).toEqual([]);
      await page.context().close();
    });
  }

  it('pre-selects the browser zone on /profile for a user who never chose one, and saves the profile', async () => {
    const user = await seedUser(app.ctx.db);
    const { page, violations } = await signIn(1200, user.email);
    await page.goto(`${app.base}/profile`);
    await page.locator('#time-zone-browser-hint').waitFor({ state: 'visible' });
    expect(await page.getByLabel('Time zone').inputValue()).toBe('Asia/Tokyo');
    await page.getByLabel('Display name').fill('Hanako Tanaka');
    await page.getByLabel('Language (pages and email)').selectOption('ja');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('プロフィールを保存しました。').waitFor();
    const row = await app.ctx.db
      .selectFrom('users')
      .select(['name', 'locale', 'time_zone'])
      .where('id', '=', user.id)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ name: 'Hanako Tanaka', locale: 'ja', time_zone: 'Asia/Tokyo' });
    expect(violations).toEqual([]);
    await page.context().close();
  });

  /**
   * axe-core over the new pages (search results, the organization tab, a
   * request read through the organization, a request with CC remove buttons,
   * the profile with form errors), in English and Japanese, desktop and 390 px:
   * no serious or critical finding.
   */
  it('has no serious or critical axe-core finding on the new pages', async () => {
    const user = await seedUser(app.ctx.db, { name: 'Hanako Tanaka' });
    const peer = await seedUser(app.ctx.db);
    const org = await createOrganization(app.ctx.db, { name: `Axe ${uniqueEmail('org')}`, shared: true, domains: [] });
    for (const u of [user, peer]) await addOrganizationMember(app.ctx.db, org.id, u.id);
    const cc = await seedUser(app.ctx.db);
    const own = await seedTicket(app.ctx.db, { requesterId: user.id, subject: '請求書について', ccIds: [cc.id] });
    const peers = await seedTicket(app.ctx.db, { requesterId: peer.id, subject: '見積書の依頼' });
    const findings: string[] = [];
    for (const width of [1200, 390]) {
      for (const locale of ['en', 'ja'] as const) {
        await app.ctx.db.updateTable('users').set({ locale, time_zone: null }).where('id', '=', user.id).execute();
        const { page } = await signIn(width, user.email);
        const pages = [
          `/requests?q=${encodeURIComponent('請求書')}`,
          '/requests?filter=org&sort=created',
          `/requests/${peers.ticket.id}`,
          `/requests/${own.ticket.id}`,
          '/profile',
        ];
        for (const path of pages) {
          await page.goto(app.base + path);
          for (const f of await axeFindings(page)) findings.push(`${width}px ${locale} ${path}: ${f}`);
        }
        // The profile showing password errors.
        await page.goto(`${app.base}/profile`);
        await page.locator('#current_password').fill('wrong');
        await page.locator('#password').fill('short');
        await page.locator('#password_confirm').fill('short');
        await page.locator('#password-heading ~ form button[type=submit]').click();
        await page.locator('#password-errors').waitFor();
        for (const f of await axeFindings(page)) findings.push(`${width}px ${locale} /profile (errors): ${f}`);
        await page.context().close();
      }
    }
    expect(findings).toEqual([]);
  }, 120_000);
});
