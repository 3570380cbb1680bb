import type { Browser, BrowserContext, Page } from 'playwright-core';
import { parseDocument } from 'htmlparser2';
import { isTag, type ChildNode } from 'domhandler';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, type ReceivedMail } from '../outbound/support/relay-sink.js';
import { uniqueEmail } from '../portal/support.js';
import { ACTIVE_CONTENT_PROBE, launchChromium, signIn, startBeacon, watchContext, type Beacon, type Watch } from './support/browser.js';
import {
  HOSTILE_FILENAME_QUOTE,
  HOSTILE_FILENAME_TAGS,
  HOSTILE_NAME,
  HOSTILE_REPLY_TEXT,
  HOSTILE_SUBJECT_PREFIX,
  HOSTILE_TEXT,
  hostileHtml,
} from './support/payloads.js';
import {
  makeUser,
  ofTicket,
  openTicket,
  PASSWORD,
  replyAddressOf,
  setPassword,
  startRig,
  submit,
  toAddress,
  type Rig,
} from './support/rig.js';

/**
 * Stored XSS: a customer's mail carries script in its HTML body, text body,
 * subject, display name and attachment file names. It goes in through the
 * real SMTP listener, is shown in the real portal to the requester and to
 * staff in real Chromium, and goes out again in staff notifications through
 * the real relay. Nowhere may any of it run. Pages are checked twice: with
 * the portal's CSP (nothing may even be blocked — a blocked inline script
 * means markup got through) and with CSP bypassed (escaping and sanitising
 * alone must hold).
 */
let rig: Rig;
let beacon: Beacon;
let browser: Browser;
let staff: { email: string };
let customer: string;
let ticketId: number;
let subject: string;
let mails: ReceivedMail[];

beforeAll(async () => {
  beacon = await startBeacon();
  rig = await startRig();
  browser = await launchChromium();
  staff = await makeUser(rig.db, { role: 'staff', name: 'Sam Staff', email: uniqueEmail('sam') });
  customer = uniqueEmail('mallory');
  subject = `${HOSTILE_SUBJECT_PREFIX} Invoice ${Date.now()}`;
  const opened = await openTicket(rig, {
    email: customer,
    name: HOSTILE_NAME,
    subject,
    text: HOSTILE_TEXT,
    staff: [staff.email],
    attachments: [
      { filename: HOSTILE_FILENAME_TAGS, content: `<script>alert('XSS-attachment')</script>`, contentType: 'text/html' },
      { filename: HOSTILE_FILENAME_QUOTE, content: 'plain', contentType: 'text/plain' },
    ],
  });
  ticketId = opened.ticketId;
  // The hostile HTML body arrives as the customer's reply (threaded by reply address), so both
  // a text-only and an HTML message are on the page.
  const replyTo = await replyAddressOf(opened.ack!);
  const htmlReply = await submit(
    rig,
    {
      from: { name: HOSTILE_NAME, address: customer },
      to: replyTo,
      subject: `Re: ${subject}`,
      text: HOSTILE_REPLY_TEXT,
      html: hostileHtml(beacon.url),
    },
    { to: [replyTo] },
  );
  expect(htmlReply).toMatchObject({ status: 'processed', ticket_id: ticketId });
  await rig.sink.waitFor((m) => toAddress(staff.email)(m) && ofTicket(ticketId)(m), 2);
  mails = rig.sink.received.filter(ofTicket(ticketId));
  await setPassword(rig.db, customer);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await rig?.teardown();
  await beacon?.stop();
});

function expectNothingRan(watch: Watch, base: string | null) {
  expect(watch.dialogs).toEqual([]);
  expect(watch.console.filter((l) => l.includes('XSS'))).toEqual([]);
  expect(watch.pageErrors).toEqual([]);
  const foreign = watch.requests.filter((u) => !(base && u.startsWith(base)) && !u.startsWith('data:') && u !== 'about:blank');
  expect(foreign).toEqual([]);
  expect(beacon.hits).toEqual([]);
}

/** Pokes every interactive payload: hover, click, focus, toggle. */
async function interact(page: Page) {
  for (const text of ['hover me', 'click me', 'click me too', 'entity link', 'data link', 'plain click', 'toggle', 'svg link']) {
    const el = page.getByText(text, { exact: true }).first();
    if ((await el.count()) === 0) continue;
    await el.hover({ timeout: 1000 }).catch(() => undefined);
    await el.click({ timeout: 1000, noWaitAfter: true }).catch(() => undefined);
  }
  await page.keyboard.press('Tab').catch(() => undefined);
  await page.waitForTimeout(300);
}

async function viewTicketAs(email: string, opts: { bypassCSP: boolean }) {
  const context: BrowserContext = await browser.newContext({ bypassCSP: opts.bypassCSP, locale: 'en-US' });
  context.setDefaultTimeout(10_000);
  const watch = await watchContext(context);
  const page = await context.newPage();
  try {
    await signIn(page, rig.base, email, PASSWORD);
    // The list shows the hostile subject as a link text.
    if (email !== customer) await page.goto(`${rig.base}/requests?filter=all`);
    expect(await page.getByRole('link', { name: subject }).count()).toBe(1);
    expect(await page.evaluate(ACTIVE_CONTENT_PROBE)).toEqual([]);

    await page.goto(`${rig.base}/requests/${ticketId}`);
    await page.getByText('Hello from a hostile mail').waitFor();
    // Everything hostile is visible as text, exactly as written.
    expect(await page.locator('h1 .subject').textContent()).toBe(subject);
    const body = (await page.locator('main').innerText()).replace(/\s+/g, ' ');
    expect(body).toContain(HOSTILE_NAME.replace(/\s+/g, ' '));
    expect(body).toContain(HOSTILE_TEXT.slice(0, 40));
    expect(body).toContain(HOSTILE_FILENAME_QUOTE);
    expect(await page.title()).toContain(HOSTILE_SUBJECT_PREFIX);
    for (const summary of await page.locator('details summary').all()) await summary.click({ timeout: 1000 }).catch(() => undefined);
    await interact(page);

    expect(await page.evaluate(ACTIVE_CONTENT_PROBE)).toEqual([]);
    expectNothingRan(watch, rig.base);
    if (!opts.bypassCSP) expect(watch.violations).toEqual([]);
  } finally {
    await context.close();
  }
}

describe('the instruments themselves', () => {
  it('catch a script that does run: dialog, console, beacon request, CSP report and the DOM probe all fire (control)', async () => {
    const control = await startBeacon();
    const context = await browser.newContext();
    const watch = await watchContext(context);
    try {
      const page = await context.newPage();
      await page.setContent(
        `<img src=x onerror="alert('XSS-control');console.log('XSS-control')"><script>fetch('${control.url}/control')</script>`,
      );
      await page.waitForTimeout(300);
      expect(watch.dialogs).toEqual(['alert: XSS-control']);
      expect(watch.console).toContain('log: XSS-control');
      expect(control.hits).toEqual(['GET /control']);
      expect(await page.evaluate(ACTIVE_CONTENT_PROBE)).toEqual(expect.arrayContaining(['<script>', 'img[onerror]']));
      // A real navigation to a page whose CSP blocks its inline script: the violation is reported.
      await page.route('http://csp-control.test/', (route) =>
        route.fulfill({
          contentType: 'text/html',
          headers: { 'content-security-policy': "script-src 'none'" },
          body: '<script>alert(2)</script>',
        }),
      );
      await page.goto('http://csp-control.test/');
      await page.waitForTimeout(100);
      expect(watch.violations.some((v) => v.startsWith('script-src'))).toBe(true);
      expect(watch.dialogs).toHaveLength(1);
    } finally {
      await context.close();
      await control.stop();
    }
  });
});

describe('stored XSS through mail content, shown in the portal (real Chromium)', () => {
  it('the requester sees subject, display name, bodies and file names as inert text, with the portal CSP', async () => {
    await viewTicketAs(customer, { bypassCSP: false });
  }, 60_000);

  it('the requester page stays inert with CSP bypassed: escaping and sanitising alone hold', async () => {
    await viewTicketAs(customer, { bypassCSP: true });
  }, 60_000);

  it('staff see the same request (All requests and the ticket page) without any script running, with and without CSP', async () => {
    await viewTicketAs(staff.email, { bypassCSP: false });
    await viewTicketAs(staff.email, { bypassCSP: true });
  }, 90_000);

  it('a hostile HTML attachment is only ever a download: the browser never renders it in our origin', async () => {
    const context = await browser.newContext({ acceptDownloads: true });
    const watch = await watchContext(context);
    const page = await context.newPage();
    try {
      await signIn(page, rig.base, customer, PASSWORD);
      await page.goto(`${rig.base}/requests/${ticketId}`);
      const link = page.locator('.attachments a').first();
      const href = (await link.getAttribute('href'))!;
      const res = await page.request.get(href);
      expect(res.status()).toBe(200);
      expect(res.headers()['content-disposition']).toMatch(/^attachment;/);
      expect(res.headers()['x-content-type-options']).toBe('nosniff');
      expect(res.headers()['content-security-policy']).toContain('sandbox');
      // Navigating to it straight: Chromium must treat it as a download, not a page.
      const [download] = await Promise.all([page.waitForEvent('download'), page.goto(href).catch(() => undefined)]);
      expect(download.suggestedFilename()).not.toMatch(/[<>"]/);
      expectNothingRan(watch, rig.base);
    } finally {
      await context.close();
    }
  }, 60_000);
});

/** Static check of an HTML mail part: no element or attribute that can run script or load anything remote. */
function activeContentIn(html: string): string[] {
  const found: string[] = [];
  const walk = (nodes: ChildNode[]) => {
    for (const n of nodes) {
      if (!isTag(n)) continue;
      if (/^(script|iframe|frame|object|embed|applet|base|form|svg|math|link|style)$/i.test(n.name)) found.push(`<${n.name}>`);
      if (n.name === 'meta' && n.attribs['http-equiv']) found.push('<meta http-equiv>');
      for (const [name, value] of Object.entries(n.attribs)) {
        if (/^on/i.test(name)) found.push(`${n.name}[${name}]`);
        if (/^\s*(javascript|vbscript|data):/i.test(value)) found.push(`${n.name}[${name}=${value.slice(0, 40)}]`);
        if ((name === 'src' || name === 'href') && value.startsWith('http') && !value.startsWith(rig.base))
          found.push(`${n.name}[${name}=${value}]`);
      }
      walk(n.children);
    }
  };
  walk(parseDocument(html).children);
  return found;
}

describe('stored XSS echoed into outgoing mail (relay sink, then real Chromium)', () => {
  it('staff notifications and the acknowledgement carry every payload escaped, and nothing runs when their HTML is opened', async () => {
    const notifications = mails.filter(toAddress(staff.email));
    expect(notifications.length).toBeGreaterThanOrEqual(2);
    const all = [...notifications, ...mails.filter(toAddress(customer))];
    const context = await browser.newContext({ javaScriptEnabled: true });
    const watch = await watchContext(context);
    try {
      for (const m of all) {
        const parsed = await parse(m);
        const html = typeof parsed.html === 'string' ? parsed.html : '';
        expect(html).not.toBe('');
        expect(activeContentIn(html)).toEqual([]);
        // Rendered like a mail client that runs script would: still nothing may run.
        const page = await context.newPage();
        await page.setContent(html, { waitUntil: 'load' });
        await page.waitForTimeout(200);
        expect(await page.evaluate(ACTIVE_CONTENT_PROBE)).toEqual([]);
        expect(parsed.subject).toContain(HOSTILE_SUBJECT_PREFIX);
        expect(await page.title()).toBe(parsed.subject);
        const text = (await page.locator('body').innerText()).replace(/\s+/g, ' ');
        if (toAddress(staff.email)(m)) {
          // The hostile strings are shown as text, not dropped: staff can see what was sent.
          expect(text).toMatch(/<script>alert\('XSS-(text|reply)'\)<\/script>/);
          expect(text).toContain(HOSTILE_NAME.replace(/\s+/g, ' '));
        }
        await page.close();
      }
      expectNothingRan(watch, null);
    } finally {
      await context.close();
    }
  }, 60_000);

  it('the staff notification lists the attachment names as text', async () => {
    const [first] = mails.filter(toAddress(staff.email));
    const parsed = await parse(first!);
    expect(parsed.text).toContain(HOSTILE_FILENAME_QUOTE);
    expect(parsed.html || '').not.toContain(`onmouseover='alert(1)'`);
    expect(parsed.html || '').not.toMatch(/<img[^>]*onerror/i);
  });
});
