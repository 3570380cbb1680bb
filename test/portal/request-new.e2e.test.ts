import { mkdirSync } from 'node:fs';
import type { ParsedMail } from 'mailparser';
import { type Browser, type Page } from 'playwright-core';
import { launchChromium } from '../support/chromium.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, startRelaySink, type RelaySink } from '../outbound/support/relay-sink.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { freePort, seedTicket, seedUser, uniqueEmail } from './support.js';

/**
 * Issue #16 in a real Chromium on a 390 px wide phone in Japanese, against a
 * real replyline whose mail goes out over SMTP to an in-process relay sink:
 * a signed-out visitor submits a request, confirms it from the mailed link
 * and lands on it; a customer who never chose a password signs in with a
 * mailed sign-in link; and the header and the My activity tabs keep their
 * layout at that width (measured from bounding boxes, not eyeballed).
 */
const ARTIFACTS = new URL('../artifacts/', import.meta.url);
const PHONE = { width: 390, height: 844 };

let app: TestApp;
let sink: RelaySink;
let browser: Browser;
let base: string;

beforeAll(async () => {
  sink = await startRelaySink();
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  app = await startTestApp({
    HTTP_LISTEN: `127.0.0.1:${port}`,
    PUBLIC_URL: base,
    OUTBOUND_SMTP_URL: sink.url,
    PORTAL_RESPONSE_FLOOR_MS: '50',
    SWEEP_INTERVAL_MS: '3600000',
  });
  browser = await launchChromium();
  mkdirSync(ARTIFACTS, { recursive: true });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await app?.teardown();
  await sink?.stop();
});

async function waitForMail(rcpt: string, match: (m: ParsedMail) => boolean, timeoutMs = 30_000): Promise<ParsedMail> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const raw of sink.received.filter((m) => m.rcptTo.includes(rcpt))) {
      const parsed = await parse(raw);
      if (match(parsed)) return parsed;
    }
    if (Date.now() > deadline) throw new Error(`no matching mail to ${rcpt} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

function linkIn(mail: ParsedMail, path: string): string {
  const re = new RegExp(`${base.replace(/[.]/g, '\\.')}${path.replace(/[?]/g, '\\?')}[^\\s<>")\\]]*`);
  const found = re.exec(mail.text ?? '')?.[0];
  if (!found) throw new Error(`no ${path} link in mail "${mail.subject}":\n${mail.text}`);
  return found;
}

async function phonePage(): Promise<Page> {
  const context = await browser.newContext({ locale: 'ja-JP', viewport: PHONE });
  return context.newPage();
}

/** Distinct rows (by rounded top) that the header's visible items occupy, its height, and any horizontal overflow of the page. */
const HEADER_PROBE = `(() => {
  const items = [...document.querySelectorAll('.site-header .brand, .site-header .nav-list > li, .site-header .lang-switch')]
    .map((el) => el.getBoundingClientRect())
    .filter((r) => r.width > 1 && r.height > 1);
  const header = document.querySelector('.site-header').getBoundingClientRect();
  return {
    rows: new Set(items.map((r) => Math.round(r.top / 8))).size,
    height: header.height,
    overflow: document.documentElement.scrollWidth - window.innerWidth,
  };
})()`;

/** Each My activity tab's top, height and line height. */
const TABS_PROBE = `[...document.querySelectorAll('.tabs a')].map((el) => {
  const r = el.getBoundingClientRect();
  return { top: Math.round(r.top), height: r.height, lineHeight: parseFloat(getComputedStyle(el).lineHeight) };
})`;

async function headerRows(page: Page): Promise<{ rows: number; height: number; overflow: number }> {
  return page.evaluate<{ rows: number; height: number; overflow: number }>(HEADER_PROBE);
}

describe('submit a request and sign-in links on a phone, in Japanese', () => {
  it('a signed-out visitor submits a request with a file, confirms it from the mail and lands on it', async () => {
    const visitor = uniqueEmail('yamada');
    const colleague = uniqueEmail('suzuki');
    const subject = `見積書の件 ${Date.now()}`;
    const page = await phonePage();
    await page.goto(`${base}/login`);
    await page.getByRole('link', { name: 'リクエストを送信' }).click();
    await page.getByRole('heading', { name: 'リクエストを送信' }).waitFor();
    await page.getByLabel('お名前').fill('山田 太郎');
    await page.getByLabel('メールアドレス').fill(visitor);
    await page.getByLabel('件名').fill(subject);
    await page.getByLabel('詳細').fill('見積書を再送してください。\nよろしくお願いします。');
    await page.getByLabel('CC（任意）').fill(colleague);
    await page.getByLabel(/ファイルを添付/).setInputFiles({ name: '見積.txt', mimeType: 'text/plain', buffer: Buffer.from('quote') });
    await page.screenshot({ path: new URL('request-new-ja-390.png', ARTIFACTS).pathname, fullPage: true });
    await page.getByRole('button', { name: '送信', exact: true }).click();
    await page.getByRole('heading', { name: 'メールをご確認ください' }).waitFor();
    // Nothing exists yet: no ticket, no account.
    expect(await app.ctx.db.selectFrom('tickets').select('id').where('subject', '=', subject).execute()).toHaveLength(0);

    const confirmation = await waitForMail(visitor, (m) => (m.text ?? '').includes('/requests/new/confirm'));
    expect(confirmation.subject).toBe('リクエストの確認');
    for (const typed of [subject, '山田', '見積書を再送']) expect(`${confirmation.text}${confirmation.html}`).not.toContain(typed);
    expect(sink.received.filter((m) => m.rcptTo.includes(colleague))).toHaveLength(0);

    await page.goto(linkIn(confirmation, '/requests/new/confirm'));
    await page.getByRole('button', { name: 'リクエストを送信する' }).click();
    await page.getByRole('heading', { name: new RegExp(subject) }).waitFor();
    await page.getByText('リクエストを送信しました。').waitFor();
    await page.getByRole('link', { name: /見積\.txt/ }).waitFor();
    expect(page.url()).toMatch(/\/requests\/\d+\?notice=created$/);

    const ack = await waitForMail(visitor, (m) => (m.text ?? '').includes('/password/new?email='));
    expect(linkIn(ack, '/password/new?email=')).toBe(`${base}/password/new?email=${encodeURIComponent(visitor)}`);
    await waitForMail(colleague, (m) => (m.text ?? '').includes('見積書を再送'));

    // My activity at 390 px: the header in at most two rows, the tabs one row of tabs, nothing wider than the screen.
    await page.goto(`${base}/requests`);
    await page.screenshot({ path: new URL('requests-ja-390.png', ARTIFACTS).pathname, fullPage: true });
    const header = await headerRows(page);
    expect(header.rows).toBeLessThanOrEqual(2);
    expect(header.overflow).toBeLessThanOrEqual(0);
    const tabs = await page.evaluate<Array<{ top: number; height: number; lineHeight: number }>>(TABS_PROBE);
    expect(tabs).toHaveLength(2);
    expect(new Set(tabs.map((t) => t.top)).size).toBe(1); // side by side, not stacked or wrapped
    for (const t of tabs) expect(t.height).toBeLessThan(t.lineHeight * 2); // each label on one line
    await page.context().close();
  });

  it('a customer who never chose a password signs in with a mailed link and lands where they were going', async () => {
    const customer = await seedUser(app.ctx.db, { password: null, locale: 'ja', name: '佐藤' });
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: customer.id, subject: 'メールだけで問い合わせた件' });
    const page = await phonePage();
    await page.goto(`${base}/requests/${ticket.id}`); // not signed in: sent to sign-in, with next
    await page.getByRole('link', { name: 'サインイン用リンクをメールで受け取る' }).click();
    await page.getByLabel('メールアドレス').fill(customer.email);
    await page.getByRole('button', { name: 'リンクを送信' }).click();
    await page.getByRole('heading', { name: 'メールをご確認ください' }).waitFor();
    const mail = await waitForMail(customer.email, (m) => (m.text ?? '').includes('/login/link/open'));
    expect(mail.subject).toBe('サインイン用リンク');
    const link = linkIn(mail, '/login/link/open');
    await page.goto(link);
    await page.getByRole('button', { name: 'サインインする' }).click();
    await page.getByRole('heading', { name: /メールだけで問い合わせた件/ }).waitFor();
    expect(new URL(page.url()).pathname).toBe(`/requests/${ticket.id}`);
    const header = await headerRows(page);
    expect(header.rows).toBeLessThanOrEqual(2);
    // The link is spent.
    await page.goto(link);
    await page.getByRole('heading', { name: 'このリンクは使用できません' }).waitFor();
    await page.context().close();
  });
});
