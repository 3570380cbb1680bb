import { UnrecoverableError } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTicket } from '../../src/db/queries/tickets.js';
import { ensureUser } from '../../src/db/queries/users.js';
import { RetryLaterError } from '../../src/jobs/define-job.js';
import { deliverOutboundMail } from '../../src/jobs/outbound/deliver-batch.js';
import { enqueueOutbound } from '../../src/jobs/send-mail.js';
import { insertOutboundMail } from '../../src/mail/outbox.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { makeStaff, outboundRow, seedTicket, staffReply, uid, waitForRow } from './support/fixtures.js';
import { header, parse, rawHeaders, startRelaySink, to, type RelaySink } from './support/relay-sink.js';

/**
 * Delivery against a relay that misbehaves on purpose. `direct` has no
 * workers, so the tests drive deliverOutboundMail themselves and see every
 * outcome; `worker` runs the real BullMQ worker for the retry path.
 */
let sink: RelaySink;
let direct: TestApp;
let worker: TestApp;
let workerSink: RelaySink;

beforeAll(async () => {
  [sink, workerSink] = await Promise.all([startRelaySink(), startRelaySink()]);
  [direct, worker] = await Promise.all([
    startTestApp({
      REPLYLINE_ROLES: 'portal',
      OUTBOUND_SMTP_URL: sink.url,
      BREAKER_PER_TICKET: '3',
      BREAKER_PER_RECIPIENT: '5',
      ACK_MAX_PER_SENDER_PER_HOUR: '2',
    }),
    startTestApp({ OUTBOUND_SMTP_URL: workerSink.url }),
  ]);
});
afterAll(async () => {
  await Promise.all([direct?.teardown(), worker?.teardown()]);
  await Promise.all([sink?.stop(), workerSink?.stop()]);
});

async function updateRow(
  app: TestApp,
  opts: {
    recipient?: string;
    ticketId?: number;
    messageId?: number;
    userId?: number;
    kind?: 'ticket_update' | 'staff_notification' | 'acknowledgement';
  },
) {
  const db = app.ctx.db;
  const t = opts.ticketId ? null : await seedTicket(db);
  return insertOutboundMail(db, app.ctx.config, {
    kind: opts.kind ?? 'ticket_update',
    recipient: opts.recipient ?? t!.customer.email,
    userId: opts.userId ?? t?.customer.id ?? null,
    locale: 'en',
    ticketId: opts.ticketId ?? t!.ticketId,
    ticketMessageId: opts.messageId ?? t!.messageId,
    payload: opts.kind === 'staff_notification' ? { event: 'customer_reply' } : {},
  });
}

const deliver = (id: number) => deliverOutboundMail(direct.ctx, id);

describe('relay failures', () => {
  it('a 5xx reply is permanent: row failed with the server reply, UnrecoverableError, nothing delivered', async () => {
    const row = await updateRow(direct, {});
    sink.mode = { type: 'reject', code: 550, message: '5.1.1 Mailbox does not exist' };
    try {
      const err = await deliver(row.id).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnrecoverableError);
    } finally {
      sink.mode = { type: 'accept' };
    }
    const after = await outboundRow(direct.ctx.db, row.id);
    expect(after.status).toBe('failed');
    expect(after.last_error).toBe('550 5.1.1 Mailbox does not exist');
    expect(after.attempts).toBe(1);
    expect(sink.received.filter(to(row.recipient))).toHaveLength(0);
    // A failed row is done: running the job again sends nothing.
    await deliver(row.id);
    expect(sink.received.filter(to(row.recipient))).toHaveLength(0);
  });

  it('a 4xx reply is temporary: attempt and reply recorded, row stays queued, a later attempt sends it', async () => {
    const row = await updateRow(direct, {});
    sink.mode = { type: 'reject', code: 451, message: '4.3.0 Try again later' };
    let err: unknown;
    try {
      err = await deliver(row.id).catch((e: unknown) => e);
    } finally {
      sink.mode = { type: 'accept' };
    }
    expect(err instanceof RetryLaterError).toBe(true);
    const mid = await outboundRow(direct.ctx.db, row.id);
    expect(mid).toMatchObject({ status: 'queued', attempts: 1, last_error: '451 4.3.0 Try again later' });
    await deliver(row.id);
    const done = await outboundRow(direct.ctx.db, row.id);
    expect(done).toMatchObject({ status: 'sent', attempts: 2, last_error: null });
    expect(done.sent_at).toBeInstanceOf(Date);
    expect(sink.received.filter(to(row.recipient))).toHaveLength(1);
  });

  it('a relay outage delays mail and never loses it', async () => {
    const row = await updateRow(direct, {});
    await sink.stop();
    try {
      const err = await deliver(row.id).catch((e: unknown) => e);
      expect(err instanceof RetryLaterError).toBe(true);
    } finally {
      await sink.restart();
    }
    const mid = await outboundRow(direct.ctx.db, row.id);
    expect(mid.status).toBe('queued');
    expect(mid.last_error).toMatch(/ECONNECTION|ESOCKET|ECONNREFUSED/);
    await deliver(row.id);
    expect((await outboundRow(direct.ctx.db, row.id)).status).toBe('sent');
    expect(sink.received.filter(to(row.recipient))).toHaveLength(1);
  });

  it('the BullMQ worker retries a 4xx with backoff until the relay accepts', async () => {
    const t = await seedTicket(worker.ctx.db);
    const row = await insertOutboundMail(worker.ctx.db, worker.ctx.config, {
      kind: 'ticket_update',
      recipient: t.customer.email,
      userId: t.customer.id,
      locale: 'en',
      ticketId: t.ticketId,
      ticketMessageId: t.messageId,
      payload: {},
    });
    workerSink.mode = { type: 'reject', code: 421, message: '4.7.0 Busy, slow down' };
    await enqueueOutbound(worker.ctx, [row.id]);
    const end = Date.now() + 10_000;
    while ((await outboundRow(worker.ctx.db, row.id)).attempts < 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    workerSink.mode = { type: 'accept' };
    const done = await waitForRow(worker.ctx.db, row.id, ['sent'], 20_000);
    expect(done.attempts).toBeGreaterThanOrEqual(2);
    expect(workerSink.received.filter(to(t.customer.email))).toHaveLength(1);
  });
});

describe('sweeper', () => {
  it('sends a committed row whose job was never enqueued (Redis down at commit time)', async () => {
    const t = await seedTicket(worker.ctx.db);
    const row = await insertOutboundMail(worker.ctx.db, worker.ctx.config, {
      kind: 'ticket_update',
      recipient: t.customer.email,
      userId: t.customer.id,
      locale: 'en',
      ticketId: t.ticketId,
      ticketMessageId: t.messageId,
      payload: {},
    });
    // Older than the sweeper's grace period, and no job exists for it.
    await worker.ctx.db
      .updateTable('outbound_mails')
      .set({ created_at: new Date(Date.now() - 60_000) })
      .where('id', '=', row.id)
      .execute();
    const swept = await worker.workers!.sweep();
    expect(swept.outbound).toBeGreaterThanOrEqual(1);
    await waitForRow(worker.ctx.db, row.id, ['sent']);
    expect(workerSink.received.filter(to(t.customer.email))).toHaveLength(1);
  });
});

describe('exactly once', () => {
  it('two deliveries of the same row at once send one mail; later runs send nothing', async () => {
    const row = await updateRow(direct, {});
    const results = await Promise.allSettled([deliver(row.id), deliver(row.id), deliver(row.id)]);
    // Losers either saw the row locked (retryable) or already sent (no-op).
    for (const r of results) if (r.status === 'rejected') expect(r.reason instanceof RetryLaterError).toBe(true);
    await deliver(row.id);
    expect((await outboundRow(direct.ctx.db, row.id)).status).toBe('sent');
    expect(sink.received.filter(to(row.recipient))).toHaveLength(1);
  });
});

describe('header injection', () => {
  it('CR/LF in names and subjects is flattened, never becomes a header or a recipient', async () => {
    const db = direct.ctx.db;
    const email = `eve-${uid()}@example.com`;
    const { user } = await ensureUser(db, { email, name: 'Eve\r\nBcc: victim@evil.test' });
    const ticket = await createTicket(db, {
      subject: 'Hi\r\nBcc: victim2@evil.test\r\n\r\n<b>body</b>',
      requesterId: user.id,
      via: 'email',
    });
    const staff = await makeStaff(db, { name: 'Mallory\nX-Injected: yes' });
    const msg = await staffReply(db, ticket.id, staff.id, 'hello');
    const row = await insertOutboundMail(db, direct.ctx.config, {
      kind: 'ticket_update',
      recipient: email,
      userId: user.id,
      locale: 'en',
      ticketId: ticket.id,
      ticketMessageId: msg.id,
      payload: {},
    });
    await deliver(row.id);
    const [m] = await sink.waitFor(to(email));
    const headers = rawHeaders(m!);
    expect(headers).not.toMatch(/^Bcc:/im);
    expect(headers).not.toMatch(/^X-Injected:/im);
    expect(m!.rcptTo).toEqual([email]);
    const parsed = await parse(m!);
    expect(parsed.subject).toBe('Re: Hi Bcc: victim2@evil.test <b>body</b>');
    expect(parsed.text).toContain('Mallory X-Injected: yes wrote');
    expect(header(m!, 'To')).toContain(email);
  });

  it('a recipient address with CR/LF or bad syntax is rejected permanently and nothing is sent', async () => {
    const t = await seedTicket(direct.ctx.db);
    for (const bad of [`x-${uid()}@example.com\r\nRCPT TO:<victim@evil.test>`, 'not an address']) {
      const row = await updateRow(direct, { recipient: bad, ticketId: t.ticketId, messageId: t.messageId, userId: t.customer.id });
      const before = sink.received.length;
      const err = await deliver(row.id).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnrecoverableError);
      const after = await outboundRow(direct.ctx.db, row.id);
      expect(after.status).toBe('failed');
      expect(after.last_error).toMatch(/^INVALID_EMAIL/);
      expect(sink.received.length).toBe(before);
    }
  });
});

describe('loop breakers', () => {
  it(`stops mail to one recipient on one ticket after BREAKER_PER_TICKET (3) in the window`, async () => {
    const t = await seedTicket(direct.ctx.db);
    const rows = [];
    for (let i = 0; i < 5; i++)
      rows.push(
        await updateRow(direct, { recipient: t.customer.email, userId: t.customer.id, ticketId: t.ticketId, messageId: t.messageId }),
      );
    for (const r of rows) await deliver(r.id);
    const after = await Promise.all(rows.map((r) => outboundRow(direct.ctx.db, r.id)));
    expect(after.map((r) => r.status)).toEqual(['sent', 'sent', 'sent', 'suppressed', 'suppressed']);
    expect(after[3]!.last_error).toMatch(/^loop_breaker_ticket/);
    expect(sink.received.filter(to(t.customer.email))).toHaveLength(3);
  });

  it('stops customer mail to one recipient across tickets after BREAKER_PER_RECIPIENT (5); staff notifications are exempt', async () => {
    const email = `busy-${uid()}@example.com`;
    const { user } = await ensureUser(direct.ctx.db, { email });
    const statuses: string[] = [];
    for (let i = 0; i < 7; i++) {
      const t = await seedTicket(direct.ctx.db);
      const r = await updateRow(direct, { recipient: email, userId: user.id, ticketId: t.ticketId, messageId: t.messageId });
      await deliver(r.id);
      statuses.push((await outboundRow(direct.ctx.db, r.id)).status);
    }
    expect(statuses).toEqual(['sent', 'sent', 'sent', 'sent', 'sent', 'suppressed', 'suppressed']);

    const staff = await makeStaff(direct.ctx.db);
    for (let i = 0; i < 7; i++) {
      const t = await seedTicket(direct.ctx.db);
      const r = await updateRow(direct, {
        kind: 'staff_notification',
        recipient: staff.email,
        userId: staff.id,
        ticketId: t.ticketId,
        messageId: t.messageId,
      });
      await deliver(r.id);
      expect((await outboundRow(direct.ctx.db, r.id)).status).toBe('sent');
    }
  });

  it('acknowledges one sender at most ACK_MAX_PER_SENDER_PER_HOUR (2) times per hour', async () => {
    const email = `flood-${uid()}@example.com`;
    const statuses: string[] = [];
    for (let i = 0; i < 3; i++) {
      const t = await seedTicket(direct.ctx.db, { email });
      const r = await updateRow(direct, {
        kind: 'acknowledgement',
        recipient: email,
        userId: t.customer.id,
        ticketId: t.ticketId,
        messageId: t.messageId,
      });
      await deliver(r.id);
      const row = await outboundRow(direct.ctx.db, r.id);
      statuses.push(row.status);
      if (i === 2) expect(row.last_error).toMatch(/^ack_limit/);
    }
    expect(statuses).toEqual(['sent', 'sent', 'suppressed']);
  });

  it('never sends to our own addresses (support and its +token reply addresses) even if a row names one', async () => {
    const t = await seedTicket(direct.ctx.db);
    for (const own of ['support@help.test', 'support+1.2.abcdefghijklmnop@help.test', 'SUPPORT+forged@help.test']) {
      const r = await updateRow(direct, { recipient: own, userId: t.customer.id, ticketId: t.ticketId, messageId: t.messageId });
      await deliver(r.id);
      const row = await outboundRow(direct.ctx.db, r.id);
      expect(row.status).toBe('suppressed');
      expect(row.last_error).toMatch(/^own_address/);
    }
    expect(sink.received.filter(to('support@help.test'))).toHaveLength(0);
  });

  it('still mails a colleague whose mailbox is on the support domain (MAIL_DOMAIN defaults to it)', async () => {
    const t = await seedTicket(direct.ctx.db);
    const r = await updateRow(direct, {
      recipient: 'alice@help.test',
      userId: t.customer.id,
      ticketId: t.ticketId,
      messageId: t.messageId,
    });
    await deliver(r.id);
    expect((await outboundRow(direct.ctx.db, r.id)).status).toBe('sent');
  });
});

describe('account mails', () => {
  it('password setup and reset links in both languages, only from PUBLIC_URL', async () => {
    const db = direct.ctx.db;
    const cases = [
      { locale: 'en' as const, purpose: 'password_setup' as const, subject: 'Set your password', phrase: 'expires at' },
      { locale: 'en' as const, purpose: 'password_reset' as const, subject: 'Reset your password', phrase: 'reset the password' },
      { locale: 'ja' as const, purpose: 'password_setup' as const, subject: 'パスワードの設定', phrase: 'に無効になります' },
      {
        locale: 'ja' as const,
        purpose: 'password_reset' as const,
        subject: 'パスワードの再設定',
        phrase: 'パスワード再設定が依頼されました',
      },
    ];
    for (const c of cases) {
      const { user } = await ensureUser(db, { email: `pw-${uid()}@example.com`, locale: c.locale });
      const url = `http://127.0.0.1:3000/password/setup/${uid()}${uid()}`;
      const row = await insertOutboundMail(db, direct.ctx.config, {
        kind: 'password_setup',
        recipient: user.email,
        userId: user.id,
        locale: c.locale,
        payload: { url, purpose: c.purpose, expiresAt: new Date(Date.now() + 3600_000).toISOString() },
      });
      await deliver(row.id);
      const [m] = await sink.waitFor(to(user.email));
      const parsed = await parse(m!);
      expect(parsed.subject).toBe(c.subject);
      expect(parsed.text).toContain(url);
      expect(parsed.text).toContain(c.phrase);
      expect(String(parsed.html)).toContain(`href="${url}"`);
      expect(header(m!, 'Auto-Submitted')).toBe('auto-generated');
      // Not ticket mail: no reply delimiter, no per-ticket Reply-To.
      expect(parsed.text).not.toContain('##-');
      expect(header(m!, 'Reply-To')).toBeUndefined();
    }
  });

  it('refuses a password link that is not under PUBLIC_URL', async () => {
    const { user } = await ensureUser(direct.ctx.db, { email: `pw-${uid()}@example.com` });
    const row = await insertOutboundMail(direct.ctx.db, direct.ctx.config, {
      kind: 'password_setup',
      recipient: user.email,
      userId: user.id,
      locale: 'en',
      payload: { url: 'https://evil.example/password/setup/abc', purpose: 'password_setup', expiresAt: new Date().toISOString() },
    });
    await expect(deliver(row.id)).rejects.toBeInstanceOf(UnrecoverableError);
    expect((await outboundRow(direct.ctx.db, row.id)).status).toBe('failed');
  });

  it('password changed notice in Japanese', async () => {
    const { user } = await ensureUser(direct.ctx.db, { email: `pwc-${uid()}@example.com`, locale: 'ja', name: '佐藤' });
    const row = await insertOutboundMail(direct.ctx.db, direct.ctx.config, {
      kind: 'password_changed',
      recipient: user.email,
      userId: user.id,
      locale: 'ja',
      payload: {},
    });
    await deliver(row.id);
    const [m] = await sink.waitFor(to(user.email));
    const parsed = await parse(m!);
    expect(parsed.subject).toBe('パスワードが変更されました');
    expect(parsed.text).toContain('佐藤 様');
    expect(parsed.text).toContain('http://127.0.0.1:3000/password/new');
  });
});
