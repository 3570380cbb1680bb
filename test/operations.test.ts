import { type Browser } from 'playwright-core';
import { launchChromium } from './support/chromium.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMail, queuedId, sendOnce, waitProcessed } from './inbound/support/smtp.js';
import { Client, seedUser, startPortalApp, type PortalTestApp } from './portal/support.js';

describe('GET /metrics', () => {
  let app: PortalTestApp;
  beforeAll(async () => {
    app = await startPortalApp({ REPLYLINE_ROLES: 'portal,smtp,worker' });
  });
  afterAll(() => app.teardown());

  it('counts what the SMTP listener and the worker really did, in Prometheus format', async () => {
    // Driven through the production path: a real SMTP transaction (counted by the listener)
    // and an auto-reply the worker holds (read back from PostgreSQL by the gauge).
    const raw = await buildMail({
      from: 'ooo@customer.test',
      to: 'support@help.test',
      subject: 'Out of office',
      text: 'I am away.',
      headers: { 'Auto-Submitted': 'auto-replied' },
    });
    const row = await waitProcessed(
      app.ctx.db,
      queuedId(await sendOnce(app.smtp!.port, { from: 'ooo@customer.test', to: ['support@help.test'] }, raw)),
    );
    expect(row.reason).toBe('auto_reply');
    const res = await fetch(`${app.base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toMatch(/^replyline_smtp_replies_total\{code="250"\} 1$/m);
    expect(text).toMatch(new RegExp(`^replyline_smtp_accepted_bytes_total ${raw.length}$`, 'm'));
    expect(text).toMatch(/^replyline_inbound_held\{reason="auto_reply"\} 1$/m);
    expect(text).toMatch(/^replyline_queue_jobs\{queue="inbound",state="waiting"\} \d+$/m);
    expect(text).toMatch(/^# TYPE replyline_job_duration_seconds histogram$/m);
    expect(text).toMatch(/^replyline_outbound_queued \d+$/m);
  });
});

describe('GET /metrics with METRICS_TOKEN', () => {
  let app: PortalTestApp;
  beforeAll(async () => {
    app = await startPortalApp({ METRICS_TOKEN: 'scrape-token-0123456789' });
  });
  afterAll(() => app.teardown());

  it('refuses a scrape without the bearer token and serves one with it', async () => {
    expect((await fetch(`${app.base}/metrics`)).status).toBe(401);
    expect((await fetch(`${app.base}/metrics`, { headers: { authorization: 'Bearer wrong-token-000000000' } })).status).toBe(401);
    const ok = await fetch(`${app.base}/metrics`, { headers: { authorization: 'Bearer scrape-token-0123456789' } });
    expect(ok.status).toBe(200);
  });
});

describe('queue dashboard at /admin/queues', () => {
  let app: PortalTestApp;
  let browser: Browser;
  beforeAll(async () => {
    app = await startPortalApp();
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await app.teardown();
  });

  it('sends anonymous visitors to sign in and hides itself (404) from customers', async () => {
    const anon = new Client(app.base);
    const r = await anon.get('/admin/queues');
    expect(r.status).toBe(303);
    expect(r.location).toMatch(/\/login\?/);
    const customer = await seedUser(app.ctx.db);
    const c = new Client(app.base);
    await c.login(customer.email, 'Correct-Horse-9');
    expect((await c.get('/admin/queues')).status).toBe(404);
    expect((await c.get('/admin/queues/api/queues')).status).toBe(404);
  });

  it('lists both queues for staff through its API, and refuses a cross-site write', async () => {
    const staff = await seedUser(app.ctx.db, { role: 'staff' });
    const c = new Client(app.base);
    await c.login(staff.email, 'Correct-Horse-9');
    const api = await c.get('/admin/queues/api/queues');
    expect(api.status).toBe(200);
    const names = (JSON.parse(api.html) as { queues: Array<{ name: string }> }).queues.map((q) => q.name).sort();
    expect(names).toEqual(['inbound', 'outbound']);
    const forged = await c.request('PUT', '/admin/queues/api/queues/inbound/retry/failed', { headers: { origin: 'https://evil.example' } });
    expect(forged.status).toBe(403);
  });

  it('renders in real Chromium under its CSP, without blocked scripts', async () => {
    const staff = await seedUser(app.ctx.db, { role: 'staff' });
    const context = await browser.newContext();
    const page = await context.newPage();
    const violations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text()) && /script/i.test(m.text())) violations.push(m.text());
    });
    await page.goto(`${app.base}/login?next=/admin/queues`);
    await page.fill('input[name=email]', staff.email);
    await page.fill('input[name=password]', 'Correct-Horse-9');
    await Promise.all([page.waitForURL(/\/admin\/queues/), page.click('form[action$="/login"] button[type=submit]')]);
    // The sidebar links exist only once bull-board's script has run and fetched the queues.
    await page.locator('a[href*="queue/inbound"]').first().waitFor({ timeout: 15_000 });
    await page.locator('a[href*="queue/outbound"]').first().waitFor({ timeout: 5_000 });
    await page.screenshot({ path: 'test/artifacts/queue-dashboard.png' });
    expect(violations).toEqual([]);
    await context.close();
  });
});
