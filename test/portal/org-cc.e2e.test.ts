import { mkdirSync } from 'node:fs';
import { type Browser, type Page } from 'playwright-core';
import { launchChromium } from '../support/chromium.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/run.js';
import { Client, GOOD_PASSWORD, latestSetPasswordToken, startPortalApp, uniqueEmail, type PortalTestApp } from './support.js';

/**
 * Issue #16, points 3 (shared organizations) and 5 (removing and re-adding
 * CCs) in a real Chromium, at 1200 px in English and at 390 px in Japanese.
 * Everything is set up through the production paths: organizations and
 * accounts with `cli org add` / `cli user add` (the domain joins them),
 * passwords through the set-password link, requests through POST /requests/new.
 */
const ARTIFACTS = new URL('../artifacts/', import.meta.url);
const shot = (page: Page, name: string) => page.screenshot({ path: new URL(name, ARTIFACTS).pathname, fullPage: true });

/** What each run sees, in its language. */
const RUNS = [
  {
    width: 1200,
    locale: 'en',
    s: {
      email: 'Email address',
      password: 'Password',
      signIn: 'Sign in',
      orgTab: 'Organization requests',
      readOnly: 'You can read this request because its requester belongs to your organization.',
      ccField: 'Email address to copy on this request',
      addCc: 'Add CC',
      ccAdded: 'The CC was added.',
      ccAlready: 'That address is already on this request.',
      remove: (who: string) => `Remove ${who} from CC`,
      ccRemoved: 'The CC was removed.',
      nobody: 'Nobody',
    },
  },
  {
    width: 390,
    locale: 'ja',
    s: {
      email: 'メールアドレス',
      password: 'パスワード',
      signIn: 'サインイン',
      orgTab: '組織のリクエスト',
      readOnly: '依頼者があなたと同じ組織に所属しているため、このリクエストを閲覧できます。',
      ccField: 'このリクエストの CC に追加するメールアドレス',
      addCc: 'CC を追加',
      ccAdded: 'CC を追加しました。',
      ccAlready: 'そのメールアドレスはすでにこのリクエストに含まれています。',
      remove: (who: string) => `${who} を CC から削除`,
      ccRemoved: 'CC を削除しました。',
      nobody: 'なし',
    },
  },
] as const;
type Strings = (typeof RUNS)[number]['s'];

let app: PortalTestApp;
let browser: Browser;
beforeAll(async () => {
  app = await startPortalApp({ RATE_LOGIN_PER_IP: '1000', RATE_PASSWORD_PER_IP: '1000' });
  browser = await launchChromium();
  mkdirSync(ARTIFACTS, { recursive: true });
}, 120_000);
afterAll(async () => {
  await browser?.close();
  await app?.teardown();
});

/** Runs a CLI command as `npm run cli` would, against the app's database; fails the test on a non-zero exit. */
async function cli(...argv: string[]): Promise<string> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, app.ctx.config, { out: (l) => out.push(l), err: (l) => err.push(l) });
  expect(code, `cli ${argv.join(' ')}: ${err.join('\n')}`).toBe(0);
  return out.join('\n');
}

/** A pre-registered customer (`cli user add`) who claims the account through the mailed set-password link. */
async function customer(email: string): Promise<Client> {
  await cli('user', 'add', email);
  const client = new Client(app.base);
  await client.get('/password/new');
  expect((await client.post('/password/new', { email })).status).toBeLessThan(400);
  const token = await latestSetPasswordToken(app.ctx.db, email, app.ctx.config.SECRET_KEY);
  await client.get(`/password/set?token=${token}`);
  const set = await client.post(`/password/set?token=${token}`, { password: GOOD_PASSWORD, password_confirm: GOOD_PASSWORD });
  expect(set.status).toBe(303);
  expect((await client.login(email, GOOD_PASSWORD)).status).toBe(303);
  return client;
}

/** Files a request through the portal's form (signed in), returning its id. */
async function fileRequest(client: Client, subject: string): Promise<number> {
  await client.get('/requests/new');
  const form = new FormData();
  form.set('subject', subject);
  form.set('description', 'Please see the attached question.');
  const res = await client.postMultipart('/requests/new', form);
  expect(res.status).toBe(303);
  return Number(/\/requests\/(\d+)\?notice=created$/.exec(res.location ?? '')![1]);
}

/** Signs in through the form in a fresh browser context of the run's width and language, then picks that language. */
async function signIn(run: (typeof RUNS)[number], email: string): Promise<Page> {
  const context = await browser.newContext({
    locale: run.locale === 'ja' ? 'ja-JP' : 'en-US',
    viewport: { width: run.width, height: 844 },
  });
  // Well under the test's timeout, so a missing element fails with the locator's own message.
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  await page.goto(`${app.base}/login`);
  await page.getByLabel(run.s.email).fill(email);
  await page.getByLabel(run.s.password).fill(GOOD_PASSWORD);
  await page.getByRole('button', { name: run.s.signIn, exact: true }).click();
  await page.waitForURL(/\/requests$/);
  // Accounts from `cli user add` start in the default language: switch with the header's switcher, as a user would.
  const lang = page.locator(`.lang-switch button[value="${run.locale}"]`);
  if ((await lang.getAttribute('aria-current')) !== 'true') {
    await lang.click();
    await page.locator(`html[lang="${run.locale}"]`).waitFor();
  }
  return page;
}

/** Nothing on the page is wider than the window. */
const pageFits = (page: Page) => page.evaluate<boolean>('document.documentElement.scrollWidth <= window.innerWidth');

/** The organization tab's box and line height, to check it is on screen and on one line. */
const ORG_TAB_PROBE = `(() => {
  const el = document.querySelector('.tabs a[href*="filter=org"]');
  const r = el.getBoundingClientRect();
  return { left: r.left, right: r.right, height: r.height, lineHeight: parseFloat(getComputedStyle(el).lineHeight), vw: window.innerWidth };
})()`;

describe('organizations and CCs in Chromium', () => {
  for (const run of RUNS) {
    const { s } = run;

    /**
     * A shared organization created with `cli org add --domain --shared`; two
     * customers added at that domain join it by themselves. One files a
     * request in the portal; the other opens the "Organization requests" tab
     * (on screen and on one line, also at 390 px), sees it and opens it
     * read-only: the notice, and no reply, CC, CC-remove or solve form. A
     * member of a non-shared organization sees no such tab and not the request.
     */
    it(`shows a shared organization's requests read-only, and nothing for a non-shared one (${run.width} px, ${run.locale})`, async () => {
      const tag = Math.random().toString(36).slice(2, 8);
      const domain = `acme-${tag}.test`;
      const otherDomain = `solo-${tag}.test`;
      expect(await cli('org', 'add', `Acme ${tag}`, '--domain', domain, '--shared')).toMatch(/\tshared\t/);
      expect(await cli('org', 'add', `Solo ${tag}`, '--domain', otherDomain)).toMatch(/\tnot shared\t/);
      const reader = `taro-${tag}@${domain}`;
      const filer = await customer(`hanako-${tag}@${domain}`);
      await customer(reader);
      const loner = `jiro-${tag}@${otherDomain}`;
      const lonerClient = await customer(loner);
      await customer(`saburo-${tag}@${otherDomain}`);
      const orgs = await cli('org', 'list');
      expect(orgs).toMatch(new RegExp(`\\tAcme ${tag}\\tshared\\t${domain}\\t2 members`));
      expect(orgs).toMatch(new RegExp(`\\tSolo ${tag}\\tnot shared\\t${otherDomain}\\t2 members`));

      const subject = run.locale === 'ja' ? `請求書の再発行 ${tag}` : `Invoice for March ${tag}`;
      const ticketId = await fileRequest(filer, subject);
      const lonerSubject = `Loner ${tag}`;
      await fileRequest(lonerClient, lonerSubject);

      const page = await signIn(run, reader);
      await page.getByRole('link', { name: s.orgTab, exact: true }).click();
      await page.waitForURL(/[?&]filter=org/);
      expect(await page.getByRole('link', { name: s.orgTab, exact: true }).getAttribute('aria-current')).toBe('page');
      const tab = await page.evaluate<{ left: number; right: number; height: number; lineHeight: number; vw: number }>(ORG_TAB_PROBE);
      expect(tab.left).toBeGreaterThanOrEqual(0);
      expect(tab.right).toBeLessThanOrEqual(tab.vw);
      expect(tab.height).toBeLessThan(tab.lineHeight * 2);
      expect(await pageFits(page)).toBe(true);
      await shot(page, `org-requests-${run.locale}-${run.width}.png`);
      const rows = await page.locator('table.requests tbody a').allTextContents();
      expect(rows).toContain(subject);
      expect(rows).not.toContain(lonerSubject);

      await page.getByRole('link', { name: subject, exact: true }).click();
      await page.waitForURL(new RegExp(`/requests/${ticketId}$`));
      await page.getByRole('heading', { level: 1, name: new RegExp(subject) }).waitFor();
      for (const action of ['/comments', '/ccs', '/ccs/remove', '/solve']) {
        expect(await page.locator(`form[action$="/requests/${ticketId}${action}"]`).count(), action).toBe(0);
      }
      expect(await page.locator('main textarea, main input[type=email], main input[type=file]').count()).toBe(0);
      expect(await page.locator('#request-read-only').textContent()).toContain(s.readOnly);
      expect(await pageFits(page)).toBe(true);
      await page.context().close();

      // A member of the non-shared organization: no tab, and the shared org's request is nowhere.
      const other = await signIn(run, loner);
      expect(await other.getByRole('link', { name: s.orgTab }).count()).toBe(0);
      await other.goto(`${app.base}/requests?filter=org`);
      expect(await other.getByRole('link', { name: s.orgTab }).count()).toBe(0);
      expect(await other.locator('table.requests tbody a').allTextContents()).toEqual([lonerSubject]);
      expect((await other.goto(`${app.base}/requests/${ticketId}`))!.status()).toBe(404);
      await other.context().close();
    });

    /**
     * The requester adds a CC through the form and sees it listed; adding the
     * same address again (in capitals) says it is already on the request and
     * adds nothing; the CC's remove button takes it off the list and the
     * person stops being a participant.
     */
    it(`adds a CC, is told when re-adding it, and removes it (${run.width} px, ${run.locale})`, async () => {
      const requester = uniqueEmail('requester');
      const colleague = uniqueEmail('colleague');
      const ticketId = await fileRequest(await customer(requester), `CC journey ${run.locale}`);
      const page = await signIn(run, requester);
      await page.goto(`${app.base}/requests/${ticketId}`);
      const ccItems = page.locator('.cc-list li');

      await addCc(page, s, colleague);
      await page.getByText(s.ccAdded).waitFor();
      await shot(page, `request-cc-${run.locale}-${run.width}.png`);
      expect(await ccItems.allTextContents()).toEqual([expect.stringContaining(colleague)]);

      await addCc(page, s, colleague.toUpperCase());
      await page.locator('#cc-error').waitFor();
      expect(await page.locator('#cc-error').textContent()).toBe(s.ccAlready);
      expect(await ccItems.count()).toBe(1);
      expect(await pageFits(page)).toBe(true);

      const label = (await page.locator('.cc-list .cc-label').textContent())!;
      await page.getByRole('button', { name: s.remove(label), exact: true }).click();
      await page.getByText(s.ccRemoved).waitFor();
      expect(await ccItems.count()).toBe(0);
      expect(await page.locator('.meta').textContent()).toContain(s.nobody);
      expect(await pageFits(page)).toBe(true);
      await page.context().close();

      const participants = await app.ctx.db
        .selectFrom('ticket_participants')
        .innerJoin('users', 'users.id', 'ticket_participants.user_id')
        .select('users.email')
        .where('ticket_id', '=', ticketId)
        .execute();
      expect(participants.map((p) => p.email)).not.toContain(colleague);
    });
  }
});

async function addCc(page: Page, s: Strings, email: string): Promise<void> {
  await page.getByLabel(s.ccField).fill(email);
  await page.getByRole('button', { name: s.addCc, exact: true }).click();
}
