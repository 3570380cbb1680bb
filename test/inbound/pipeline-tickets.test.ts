import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertInboundMessage } from '../../src/db/queries/inbound-messages.js';
import { processInboundMessage } from '../../src/jobs/inbound/batch.js';
import { makeTicketTag } from '../../src/mail/tokens.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { trustedSenderDns } from '../support/sender-dns.js';
import type { TestDnsServer } from '../outbound/support/dns-server.js';
import {
  makeStaff,
  messagesOf,
  openTicket,
  ourOutboundMail,
  outboxOf,
  replyAddress,
  SECRET,
  setStatus,
  ticket,
} from './support/fixtures.js';
import { buildMail, deliver, queuedId, sendOnce, uid, waitProcessed } from './support/smtp.js';

let app: TestApp;
let port: number;
const db = () => app.ctx.db;

let dns: TestDnsServer;

beforeAll(async () => {
  // customer.example passes SPF from 127.0.0.1: its mail may add CCs.
  dns = await trustedSenderDns(['customer.example']);
  app = await startTestApp({ MAX_CCS: '3', DNS_SERVERS: dns.server });
  port = app.smtp!.port;
  await makeStaff(app.ctx.db);
});
afterAll(async () => {
  await app.teardown();
  await dns.stop();
});

describe('a new sender', () => {
  it('gets an implicit account and a new ticket, with an acknowledgement and staff notifications in the outbox', async () => {
    const email = `new-${uid()}@customer.example`;
    const row = await deliver(db(), port, {
      from: `Dana Reyes <${email}>`,
      to: 'support@help.test',
      subject: 'Cannot log in',
      text: 'I cannot log in since yesterday.\n\nOn Mon, Jan 1, 2024 at 10:00 AM Someone <x@y.example> wrote:\n> old stuff\n',
      messageId: `<login.${uid()}@customer.example>`,
    });
    expect(row.status).toBe('processed');
    const user = await db().selectFrom('users').selectAll().where('email', '=', email).executeTakeFirstOrThrow();
    expect(user).toMatchObject({ name: 'Dana Reyes', role: 'customer', password_hash: null, verified_at: null });
    const t = await ticket(db(), row.ticket_id!);
    expect(t).toMatchObject({ subject: 'Cannot log in', status: 'new', requester_id: user.id, via: 'email', follow_up_of: null });
    const [m] = await messagesOf(db(), t.id);
    expect(m!.body_text).toBe('I cannot log in since yesterday.');
    expect(m!.original_text).toContain('> old stuff');
    expect(m!.visibility).toBe('public');
    const outbox = await outboxOf(db(), t.id);
    expect(outbox.filter((o) => o.kind === 'acknowledgement').map((o) => o.recipient)).toEqual([email]);
    expect(outbox.some((o) => o.kind === 'staff_notification')).toBe(true);
  });

  it('reuses the existing account on a second mail (addresses compared case-insensitively)', async () => {
    const email = `twice-${uid()}@customer.example`;
    const a = await deliver(db(), port, { from: email, to: 'support@help.test', subject: 'one', text: 'one' });
    const b = await deliver(
      db(),
      port,
      { from: email.toUpperCase(), to: 'support@help.test', subject: 'two', text: 'two' },
      { from: email, to: ['support@help.test'] },
    );
    const users = await db().selectFrom('users').select('id').where('email', '=', email).execute();
    expect(users).toHaveLength(1);
    expect(a.ticket_id).not.toBe(b.ticket_id);
  });
});

describe('threading', () => {
  it('threads by a signed reply address in To', async () => {
    const t = await openTicket(db(), port);
    const row = await deliver(db(), port, {
      from: t.email,
      to: replyAddress(t.ticketId, t.requesterId),
      subject: 'Re: x',
      text: 'more info',
    });
    expect(row).toMatchObject({ status: 'processed', ticket_id: t.ticketId });
    expect((await messagesOf(db(), t.ticketId)).map((m) => m.body_text)).toEqual(['Help!', 'more info']);
  });

  it('threads by a signed reply address that arrives only in Cc', async () => {
    const t = await openTicket(db(), port);
    const reply = replyAddress(t.ticketId, t.requesterId);
    const row = await deliver(
      db(),
      port,
      { from: t.email, to: 'support@help.test', cc: reply, subject: 'Re: x', text: 'via cc' },
      { from: t.email, to: ['support@help.test', reply] },
    );
    expect(row.ticket_id).toBe(t.ticketId);
  });

  it('threads by the envelope recipient when the client stripped To/Cc headers', async () => {
    const t = await openTicket(db(), port);
    const reply = replyAddress(t.ticketId, t.requesterId);
    const raw = `From: ${t.email}\r\nSubject: no headers\r\nMessage-ID: <s.${uid()}@customer.example>\r\n\r\nstripped\r\n`;
    const row = await waitProcessed(db(), queuedId(await sendOnce(port, { from: t.email, to: [reply] }, raw)));
    expect(row.ticket_id).toBe(t.ticketId);
  });

  it('threads by In-Reply-To naming one of our outbound Message-IDs', async () => {
    const t = await openTicket(db(), port);
    const ours = await ourOutboundMail(db(), t.ticketId, t.requesterId, t.email);
    const row = await deliver(db(), port, {
      from: t.email,
      to: 'support@help.test',
      subject: 'Re: Printer',
      text: 'thanks',
      inReplyTo: `<${ours.message_id}>`,
    });
    expect(row.ticket_id).toBe(t.ticketId);
  });

  it('threads by References naming a Message-ID stored on the ticket', async () => {
    const t = await openTicket(db(), port);
    const row = await deliver(db(), port, {
      from: t.email,
      to: 'support@help.test',
      subject: 'Re: Printer',
      text: 'again',
      references: `<unrelated.${uid()}@x.example> ${t.messageId}`,
    });
    expect(row.ticket_id).toBe(t.ticketId);
  });

  it('threads by the signed body tag when every header was stripped', async () => {
    const t = await openTicket(db(), port);
    const text = `ok\n\n> ${makeTicketTag(SECRET, t.ticketId)}\n> quoted`;
    const row = await deliver(db(), port, { from: t.email, to: 'support@help.test', subject: 'fwd', text });
    expect(row.ticket_id).toBe(t.ticketId);
  });

  it('never threads by a bare ticket number in the subject or a forged tag', async () => {
    const t = await openTicket(db(), port);
    const text = `see [RL-${t.ticketId}-aaaaaaaaaaaaaaaa]`;
    const row = await deliver(db(), port, {
      from: t.email,
      to: 'support@help.test',
      subject: `Re: [#${t.ticketId}] Ticket #${t.ticketId}`,
      text,
    });
    expect(row.status).toBe('processed');
    expect(row.ticket_id).not.toBe(t.ticketId);
  });

  it('holds a threaded message from a non-participant (not_participant) and shows nothing', async () => {
    const t = await openTicket(db(), port);
    const stranger = `stranger-${uid()}@elsewhere.example`;
    const row = await deliver(db(), port, {
      from: stranger,
      to: replyAddress(t.ticketId, t.requesterId),
      subject: 'Re: x',
      text: 'let me in',
    });
    expect(row).toMatchObject({ status: 'held', reason: 'not_participant', ticket_id: t.ticketId });
    expect(await messagesOf(db(), t.ticketId)).toHaveLength(1);
  });

  it('opens a follow-up ticket for a reply to a closed ticket', async () => {
    const t = await openTicket(db(), port);
    await setStatus(db(), t.ticketId, 'closed');
    const row = await deliver(db(), port, {
      from: t.email,
      to: replyAddress(t.ticketId, t.requesterId),
      subject: 'Re: Printer',
      text: 'it is on fire again',
    });
    expect(row.status).toBe('processed');
    expect(row.ticket_id).not.toBe(t.ticketId);
    expect(await ticket(db(), row.ticket_id!)).toMatchObject({ follow_up_of: t.ticketId, status: 'new', requester_id: t.requesterId });
    expect((await ticket(db(), t.ticketId)).status).toBe('closed');
  });

  it.each(['solved', 'pending'] as const)('reopens a %s ticket when the requester replies', async (status) => {
    const t = await openTicket(db(), port);
    await setStatus(db(), t.ticketId, status);
    await deliver(db(), port, { from: t.email, to: replyAddress(t.ticketId, t.requesterId), subject: 'Re', text: 'not fixed' });
    expect((await ticket(db(), t.ticketId)).status).toBe('open');
  });
});

describe('deduplication', () => {
  it('a re-delivered message (same Message-ID) adds nothing', async () => {
    const email = `dup-${uid()}@customer.example`;
    const raw = await buildMail({
      from: email,
      to: 'support@help.test',
      subject: 'dup',
      text: 'once',
      messageId: `<dup.${uid()}@customer.example>`,
    });
    const first = await waitProcessed(db(), queuedId(await sendOnce(port, { from: email, to: ['support@help.test'] }, raw)));
    const second = await waitProcessed(db(), queuedId(await sendOnce(port, { from: email, to: ['support@help.test'] }, raw)));
    expect(first.status).toBe('processed');
    expect(second).toMatchObject({ status: 'processed', reason: 'duplicate', ticket_id: first.ticket_id });
    expect(await messagesOf(db(), first.ticket_id!)).toHaveLength(1);
    expect((await outboxOf(db(), first.ticket_id!)).filter((o) => o.kind === 'acknowledgement')).toHaveLength(1);
  });

  it('dedupes a message without Message-ID by the hash of its raw bytes', async () => {
    const email = `nomid-${uid()}@customer.example`;
    const raw = `From: ${email}\r\nTo: support@help.test\r\nSubject: no id ${uid()}\r\n\r\nbody\r\n`;
    const first = await waitProcessed(db(), queuedId(await sendOnce(port, { from: email, to: ['support@help.test'] }, raw)));
    const second = await waitProcessed(db(), queuedId(await sendOnce(port, { from: email, to: ['support@help.test'] }, raw)));
    expect(first.reason).toBeNull();
    expect(second.reason).toBe('duplicate');
  });
});

describe('CCs', () => {
  it('adds other To/Cc addresses as cc participants with implicit accounts (a colleague on MAIL_DOMAIN too), never our own addresses', async () => {
    const email = `cc-${uid()}@customer.example`;
    const deskmate = `deskmate-${uid()}@help.test`;
    const colleague = `colleague-${uid()}@customer.example`;
    const boss = `boss-${uid()}@customer.example`;
    const row = await deliver(db(), port, {
      from: email,
      to: ['support@help.test', colleague],
      cc: [`Big Boss <${boss}>`, deskmate, 'support+abc.def@help.test'],
      subject: 'cc',
      text: 'x',
    });
    const parts = await db()
      .selectFrom('ticket_participants as p')
      .innerJoin('users as u', 'u.id', 'p.user_id')
      .select(['u.email', 'p.role', 'u.name'])
      .where('p.ticket_id', '=', row.ticket_id!)
      .orderBy('u.email')
      .execute();
    expect(parts.map((p) => [p.email, p.role]).sort()).toEqual(
      [
        [boss, 'cc'],
        [colleague, 'cc'],
        [deskmate, 'cc'],
        [email, 'requester'],
      ].sort(),
    );
    expect(parts.find((p) => p.email === boss)!.name).toBe('Big Boss');
  });

  it('holds a message with more CCs than MAX_CCS (cc_limit) and creates no ticket', async () => {
    const email = `many-${uid()}@customer.example`;
    const cc = Array.from({ length: 4 }, (_, i) => `p${i}-${uid()}@customer.example`);
    const row = await deliver(db(), port, { from: email, to: 'support@help.test', cc, subject: 'many', text: 'x' });
    expect(row).toMatchObject({ status: 'held', reason: 'cc_limit', ticket_id: null });
  });
});

describe('idempotence and recovery', () => {
  it('processing the same row twice, even concurrently, creates exactly one ticket', async () => {
    const email = `idem-${uid()}@customer.example`;
    const raw = await buildMail({ from: email, to: 'support@help.test', subject: 'idem', text: 'x' });
    const id = await insertInboundMessage(db(), raw, {
      mailFrom: email,
      rcptTo: ['support@help.test'],
      clientAddress: '127.0.0.1',
      helo: 'h',
      tls: false,
    });
    const results = await Promise.all([processInboundMessage(app.ctx, id), processInboundMessage(app.ctx, id)]);
    expect(results.map((r) => r.status).sort()).toEqual(['processed', 'skipped']);
    expect((await processInboundMessage(app.ctx, id)).status).toBe('skipped');
    const tickets = await db()
      .selectFrom('tickets')
      .select('id')
      .where('requester_id', '=', db().selectFrom('users').select('id').where('email', '=', email))
      .execute();
    expect(tickets).toHaveLength(1);
  });

  it('the sweeper picks up a stored row that never got a job (Redis was down at accept time)', async () => {
    const email = `swept-${uid()}@customer.example`;
    const raw = await buildMail({ from: email, to: 'support@help.test', subject: 'swept', text: 'x' });
    const id = await insertInboundMessage(db(), raw, {
      mailFrom: email,
      rcptTo: ['support@help.test'],
      clientAddress: '127.0.0.1',
      helo: 'h',
      tls: false,
    });
    await db()
      .updateTable('inbound_messages')
      .set({ received_at: new Date(Date.now() - 60_000) })
      .where('id', '=', id)
      .execute();
    const swept = await app.workers!.sweep();
    expect(swept.inbound).toBeGreaterThanOrEqual(1);
    expect((await waitProcessed(db(), id)).status).toBe('processed');
  });
});
