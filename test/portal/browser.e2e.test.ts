import { mkdirSync } from 'node:fs';
import nodemailer from 'nodemailer';
import type { ParsedMail } from 'mailparser';
import { type Browser } from 'playwright-core';
import { launchChromium } from '../support/chromium.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTicketStatus } from '../../src/db/queries/tickets.js';
import { runLifecycle } from '../../src/jobs/lifecycle.js';
import { parse, startRelaySink, type RelaySink } from '../outbound/support/relay-sink.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { trustedSenderDns } from '../support/sender-dns.js';
import type { TestDnsServer } from '../outbound/support/dns-server.js';
import { freePort, uniqueEmail } from './support.js';

/**
 * The customer journey in a real Chromium against a real replyline: mail in
 * over SMTP, acknowledgement and set-password mail out over SMTP into an
 * in-process relay sink, and every step in between through the browser.
 */
const ARTIFACTS = new URL('../artifacts/', import.meta.url);

let app: TestApp;
let sink: RelaySink;
let browser: Browser;
let dns: TestDnsServer;
let base: string;

beforeAll(async () => {
  sink = await startRelaySink();
  // example.test passes SPF from 127.0.0.1: Jiro's mail may put Hanako in Cc.
  dns = await trustedSenderDns(['example.test']);
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  app = await startTestApp({
    HTTP_LISTEN: `127.0.0.1:${port}`,
    PUBLIC_URL: base,
    OUTBOUND_SMTP_URL: sink.url,
    PORTAL_RESPONSE_FLOOR_MS: '50',
    // Effectively no sweeper: every mail in this journey must travel the normal enqueue path.
    SWEEP_INTERVAL_MS: '3600000',
    DNS_SERVERS: dns.server,
  });
  browser = await launchChromium();
  mkdirSync(ARTIFACTS, { recursive: true });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await app?.teardown();
  await sink?.stop();
  await dns?.stop();
});

async function sendToSupport(mail: Parameters<ReturnType<typeof nodemailer.createTransport>['sendMail']>[0]): Promise<void> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: app.smtp!.port, secure: false, ignoreTLS: true });
  try {
    await transport.sendMail({ to: 'support@help.test', ...mail });
  } finally {
    transport.close();
  }
}

/** Polls the sink until a mail to `rcpt` satisfies `match` (mail text is decoded, so links are whole). */
async function waitForMail(rcpt: string, match: (m: ParsedMail) => boolean, timeoutMs = 30_000): Promise<ParsedMail> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const raw of sink.received.filter((m) => m.rcptTo.includes(rcpt))) {
      const parsed = await parse(raw);
      if (match(parsed)) return parsed;
    }
    if (Date.now() > deadline) {
      const outbox = await app.ctx.db
        .selectFrom('outbound_mails')
        .select(['id', 'kind', 'status', 'last_error'])
        .where('recipient', '=', rcpt)
        .execute();
      const inbound = await app.ctx.db.selectFrom('inbound_messages').select(['id', 'status', 'reason', 'error']).execute();
      throw new Error(
        `no matching mail to ${rcpt} within ${timeoutMs} ms (${sink.received.length} received in all); ` +
          `outbox ${JSON.stringify(outbox)}; inbound ${JSON.stringify(inbound)}`,
      );
    }
    // No sweeper nudge here: the mail must arrive through the normal enqueue path.
    await new Promise((r) => setTimeout(r, 150));
  }
}

async function ticketOfSubject(subject: string, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = await app.ctx.db.selectFrom('tickets').select('id').where('subject', '=', subject).executeTakeFirst();
    if (row) return row.id;
    if (Date.now() > deadline) throw new Error(`no ticket "${subject}"`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function linkIn(mail: ParsedMail, path: string): string {
  const re = new RegExp(`${base.replace(/[.]/g, '\\.')}${path.replace(/[?]/g, '\\?')}[^\\s<>")\\]]*`);
  const found = re.exec(mail.text ?? '')?.[0];
  if (!found) throw new Error(`no ${path} link in mail "${mail.subject}":\n${mail.text}`);
  return found;
}

describe('customer journey in Chromium', () => {
  it("emails support, claims the account from the acknowledgement, signs in, sees own and CC'd requests, replies and solves", async () => {
    const customer = uniqueEmail('hanako');
    const colleague = uniqueEmail('jiro');
    const mySubject = `Printer on fire ${Date.now()}`;
    const ccSubject = `Team printer order ${Date.now()}`;

    await sendToSupport({ from: `Hanako Tanaka <${customer}>`, subject: mySubject, text: 'Our printer is on fire.\nPlease help.' });
    const ack = await waitForMail(customer, (m) => (m.text ?? '').includes('/password/new'));
    const ticketId = await ticketOfSubject(mySubject);
    // "#<id>" followed by a non-digit: a bare id could match any digit of the 127.0.0.1 links.
    expect(ack.text).toMatch(new RegExp(`#${ticketId}(?!\\d)`));

    await sendToSupport({
      from: `Jiro Sato <${colleague}>`,
      cc: customer,
      subject: ccSubject,
      text: 'Please order a new printer for our team.',
    });
    const ccTicketId = await ticketOfSubject(ccSubject);

    const context = await browser.newContext({ locale: 'en-US', viewport: { width: 1200, height: 900 } });
    const page = await context.newPage();
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });

    // The acknowledgement's "get a password" link.
    await page.goto(linkIn(ack, '/password/new'));
    await page.getByLabel('Email address').fill(customer);
    await page.getByRole('button', { name: 'Email me a link' }).click();
    await page.getByRole('heading', { name: 'Check your email' }).waitFor();

    const setMail = await waitForMail(customer, (m) => (m.text ?? '').includes('/password/set?token='));
    await page.goto(linkIn(setMail, '/password/set?token='));
    await page.getByLabel('New password', { exact: true }).fill('Printer-Safe-2024');
    await page.getByLabel('Repeat the new password').fill('Printer-Safe-2024');
    await page.getByRole('button', { name: 'Set password' }).click();
    await page.waitForURL(`${base}/login?notice=password_set`);

    await page.getByLabel('Email address').fill(customer);
    await page.getByLabel('Password').fill('Printer-Safe-2024');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${base}/requests`);

    const myRow = page.getByRole('row').filter({ hasText: mySubject });
    expect(await myRow.count()).toBe(1);
    expect(await myRow.textContent()).toContain(`#${ticketId}`);
    await page.screenshot({ path: new URL('portal-requests.png', ARTIFACTS).pathname, fullPage: true });
    // Responsive: on a phone-sized screen the table becomes labelled rows, with no sideways scrolling.
    await page.setViewportSize({ width: 390, height: 844 });
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
    await page.screenshot({ path: new URL('portal-requests-mobile.png', ARTIFACTS).pathname, fullPage: true });
    await page.setViewportSize({ width: 1200, height: 900 });

    await page.getByRole('link', { name: "Requests I'm CC'd on" }).click();
    await page.waitForURL(`${base}/requests?filter=cc`);
    expect(await page.getByRole('row').filter({ hasText: ccSubject }).count()).toBe(1);
    expect(await page.getByRole('row').filter({ hasText: mySubject }).count()).toBe(0);
    expect(ccTicketId).not.toBe(ticketId);

    await page.getByRole('link', { name: 'My requests' }).click();
    await page.getByRole('link', { name: mySubject }).click();
    await page.waitForURL(`${base}/requests/${ticketId}`);
    expect(await page.getByText('Our printer is on fire.').isVisible()).toBe(true);

    await page.getByLabel('Your reply').fill('The fire is out, but it smells odd.');
    // The plain HTML form (no script) with a file: streamed on the server, its CSRF field read first.
    await page.locator('#files').setInputFiles({ name: 'smell-report.txt', mimeType: 'text/plain', buffer: Buffer.from('burnt toner') });
    await page.getByRole('button', { name: 'Send reply' }).click();
    await page.waitForURL(new RegExp(`/requests/${ticketId}\\?notice=commented`));
    expect(await page.getByText('Your reply was added.').isVisible()).toBe(true);
    expect(await page.getByText('The fire is out, but it smells odd.').isVisible()).toBe(true);
    expect(await page.getByRole('link', { name: /smell-report\.txt/ }).count()).toBe(1);
    await page.screenshot({ path: new URL('portal-request.png', ARTIFACTS).pathname, fullPage: true });

    await page.getByRole('button', { name: 'Mark as solved' }).click();
    await page.waitForURL(new RegExp(`/requests/${ticketId}\\?notice=solved`));
    expect(await page.locator('#request-status').textContent()).toBe('Solved');

    const ticket = await app.ctx.db.selectFrom('tickets').select('status').where('id', '=', ticketId).executeTakeFirstOrThrow();
    expect(ticket.status).toBe('solved');
    const reply = await app.ctx.db
      .selectFrom('messages')
      .select(['via', 'visibility'])
      .where('ticket_id', '=', ticketId)
      .where('body_text', '=', 'The fire is out, but it smells odd.')
      .executeTakeFirstOrThrow();
    expect(reply).toEqual({ via: 'portal', visibility: 'public' });
    expect(dialogs).toEqual([]);

    // The same journey's language switcher, without JavaScript: the page comes back in Japanese.
    await page.getByRole('button', { name: '日本語' }).click();
    await page.waitForURL(new RegExp(`/requests/${ticketId}`));
    expect(await page.locator('html').getAttribute('lang')).toBe('ja');
    expect(await page.locator('#request-status').textContent()).toBe('解決済み');
    await page.screenshot({ path: new URL('portal-request-ja.png', ARTIFACTS).pathname, fullPage: true });
    await context.close();
  }, 120_000);

  it('rates a solved request from the satisfaction mail without signing in, and adds a comment', async () => {
    const customer = uniqueEmail('csat');
    const subject = `Toner ${Date.now()}`;
    await sendToSupport({ from: `Carol <${customer}>`, subject, text: 'Out of toner.' });
    const ticketId = await ticketOfSubject(subject);
    await setTicketStatus(app.ctx.db, ticketId, 'solved');
    expect((await runLifecycle(app.ctx, new Date(Date.now() + 25 * 3_600_000))).surveyed).toBeGreaterThanOrEqual(1);
    const survey = await waitForMail(customer, (m) => (m.subject ?? '').startsWith('How would you rate the support you received?'));

    // A fresh browser: no session, no cookies; the signed link is enough.
    const context = await browser.newContext({ locale: 'en-US', viewport: { width: 800, height: 700 } });
    const page = await context.newPage();
    await page.goto(linkIn(survey, '/satisfaction/').replace(/\/(good|bad)$/, '') + '/good');
    await page.getByRole('heading', { name: 'Thank you for your feedback' }).waitFor();
    expect(await page.locator('#csat-recorded').getAttribute('data-rating')).toBe('good');
    await page.getByLabel('Would you like to tell us more? (optional)').fill('Quick and friendly.');
    await page.getByRole('button', { name: 'Send comment' }).click();
    await page.locator('#csat-saved').waitFor();
    await page.screenshot({ path: new URL('portal-satisfaction.png', ARTIFACTS).pathname, fullPage: true });
    const row = await app.ctx.db
      .selectFrom('tickets')
      .select(['csat_rating', 'csat_comment'])
      .where('id', '=', ticketId)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ csat_rating: 'good', csat_comment: 'Quick and friendly.' });
    await context.close();
  }, 60_000);

  it('shows an XSS-laden email without running any script', async () => {
    const customer = uniqueEmail('mallory');
    const subject = `<script>alert("subject")</script> Invoice ${Date.now()}`;
    await sendToSupport({
      from: customer,
      subject,
      text: 'See the HTML part',
      html:
        '<p id="greeting">Hello from a hostile mail</p>' +
        '<script>window.__xss = "script"; alert("script")</script>' +
        '<img src="x" onerror="window.__xss = \'onerror\'; alert(\'img\')">' +
        '<svg><script>alert("svg")</script></svg>' +
        '<a href="javascript:alert(\'link\')" id="jslink">click me</a>' +
        '<iframe src="javascript:alert(\'frame\')"></iframe>' +
        '<div style="background:url(javascript:alert(1))" onmouseover="alert(\'hover\')">hover me</div>',
    });
    const ticketId = await ticketOfSubject(subject);
    // Give the customer a password directly: this test is about rendering, not the claim flow.
    const { hashPassword } = await import('../../src/auth/password.js');
    await app.ctx.db
      .updateTable('users')
      .set({ password_hash: await hashPassword('Hostile-Mail-1') })
      .where('email', '=', customer)
      .execute();

    const context = await browser.newContext({ locale: 'en-US' });
    const page = await context.newPage();
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await page.goto(`${base}/login`);
    await page.getByLabel('Email address').fill(customer);
    await page.getByLabel('Password').fill('Hostile-Mail-1');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${base}/requests`);
    expect(await page.getByRole('link', { name: subject }).count()).toBe(1); // the subject shows as text

    await page.goto(`${base}/requests/${ticketId}`);
    expect(await page.getByText('Hello from a hostile mail').isVisible()).toBe(true);
    await page
      .getByText('hover me')
      .hover()
      .catch(() => undefined);
    await page
      .getByText('click me')
      .click()
      .catch(() => undefined);
    await page.waitForTimeout(300);
    expect(await page.evaluate(() => (globalThis as { __xss?: string }).__xss)).toBeUndefined();
    expect(dialogs).toEqual([]);
    // The only script is our own same-origin time-zone helper (offered until a zone is chosen).
    expect(await page.locator('script:not([src*="/assets/time-zone.js?"])').count()).toBe(0);
    expect(await page.locator('iframe').count()).toBe(0);
    expect(await page.locator('[onerror], [onmouseover], [style]').count()).toBe(0);
    await context.close();
  }, 90_000);
});
