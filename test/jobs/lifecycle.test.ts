import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertSubmission } from '../../src/db/queries/portal-submissions.js';
import { createUser } from '../../src/db/queries/users.js';
import { runLifecycle } from '../../src/jobs/lifecycle.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { flow, mid } from '../outbound/support/flow.js';
import { header, parse, startRelaySink, to, type ReceivedMail, type RelaySink } from '../outbound/support/relay-sink.js';
import { deliverRaw, waitInbound } from '../outbound/support/smtp-client.js';
import { buildMail } from '../outbound/support/staff-mail.js';

/**
 * Ticket lifecycle automations, end to end: customers and staff write real
 * mail through the SMTP listener, the relay sink receives what goes out, and
 * the automations run at a clock the test moves forward (no real waiting),
 * except for one test of the real repeatable schedule with short durations.
 */
const DAY = 86_400_000;
const MINUTE = 60_000;
let sink: RelaySink;
let app: TestApp;
let alice: { id: number; email: string };
const { openTicket, staffAnswers, ticket } = flow(() => ({ app, sink, staffEmail: alice.email, dkim: undefined }));

beforeAll(async () => {
  sink = await startRelaySink();
  // Token mode: staff replies are identified by their own reply address, no DNS needed.
  app = await startTestApp({ OUTBOUND_SMTP_URL: sink.url, STAFF_AUTH: 'token', DNS_SERVERS: '127.0.0.1:9' });
  alice = await createUser(app.ctx.db, { email: 'alice@corp.test', name: 'Alice Agent', role: 'staff' });
});
afterAll(async () => {
  await app?.teardown();
  await sink?.stop();
});

const later = (ms: number) => new Date(Date.now() + ms);
const lifecycleMailsTo = (customer: string, ticketId: number) =>
  app.ctx.db
    .selectFrom('outbound_mails')
    .select(['id', 'payload', 'locale'])
    .where('kind', '=', 'ticket_lifecycle')
    .where('recipient', '=', customer)
    .where('ticket_id', '=', ticketId)
    .execute();

/** The customer answers a mail replyline sent them, from their own client, to its Reply-To. */
async function customerAnswers(customer: string, mail: ReceivedMail, text: string) {
  const parsed = await parse(mail);
  const replyTo = parsed.replyTo!.value[0]!.address!;
  const answerMid = mid('cust-reply');
  const raw = await buildMail({
    from: customer,
    to: replyTo,
    subject: `Re: ${parsed.subject}`,
    text,
    inReplyTo: header(mail, 'Message-ID'),
    references: [header(mail, 'Message-ID')!],
    headers: { 'Message-ID': `<${answerMid}>` },
  });
  await deliverRaw(app.smtp!.port, raw, { from: customer, to: [replyTo] });
  return waitInbound(app.ctx.db, answerMid);
}

describe('solved → closed', () => {
  it('closes a solved ticket after SOLVED_CLOSE_AFTER, silently, and a reply then opens a linked follow-up', async () => {
    const customer = `closing-${Date.now()}@customer.test`;
    const { ticketId, notification, byTicket } = await openTicket(customer, 'Close me later');
    await staffAnswers(notification, '#status solved\nFixed, the printer is safe now.');
    const [, update] = await sink.waitFor((m) => to(customer)(m) && byTicket(m), 2);
    expect((await ticket(ticketId)).status).toBe('solved');

    // Just before the 4 days (the default) nothing happens; just after, it is closed.
    await runLifecycle(app.ctx, later(4 * DAY - MINUTE));
    expect((await ticket(ticketId)).status).toBe('solved');
    const kinds = async () =>
      (await app.ctx.db.selectFrom('outbound_mails').select('kind').where('ticket_id', '=', ticketId).execute()).map((m) => m.kind).sort();
    // By then the satisfaction survey went out (CSAT_AFTER, 24 h by default).
    expect(await kinds()).toEqual(['acknowledgement', 'staff_notification', 'ticket_lifecycle', 'ticket_update']);
    await runLifecycle(app.ctx, later(4 * DAY + MINUTE));
    expect((await ticket(ticketId)).status).toBe('closed');
    // Closing mails nobody (Zendesk's default).
    expect(await kinds()).toEqual(['acknowledgement', 'staff_notification', 'ticket_lifecycle', 'ticket_update']);

    // The customer answers the old update: a new ticket, linked to the closed one, acknowledged.
    const inbound = await customerAnswers(customer, update!, 'It is burning again.');
    expect(inbound.status).toBe('processed');
    expect(inbound.ticket_id).not.toBe(ticketId);
    const followUp = await ticket(inbound.ticket_id!);
    expect(followUp).toMatchObject({ follow_up_of: ticketId, status: 'new' });
    expect((await ticket(ticketId)).status).toBe('closed');
    await sink.waitFor((m) => to(customer)(m) && (header(m, 'Message-ID') ?? '').startsWith(`<rl.${followUp.id}.`));
  });

  it('leaves a solved ticket open for business when the customer answers before the deadline', async () => {
    const customer = `reopen-${Date.now()}@customer.test`;
    const { ticketId, notification, byTicket } = await openTicket(customer, 'Not really fixed');
    await staffAnswers(notification, '#status solved\nShould be fine.');
    const [, update] = await sink.waitFor((m) => to(customer)(m) && byTicket(m), 2);
    expect((await customerAnswers(customer, update!, 'Still broken.')).ticket_id).toBe(ticketId);
    expect((await ticket(ticketId)).status).toBe('open');
    await runLifecycle(app.ctx, later(30 * DAY));
    expect((await ticket(ticketId)).status).toBe('open');
  });
});

describe('pending: reminder, then auto-solve', () => {
  it('reminds the requester once after 3 days and solves after 7, in Japanese for a Japanese customer, threaded', async () => {
    const customer = `pending-ja-${Date.now()}@customer.test`;
    const customerMid = mid('ja');
    const raw = await buildMail({
      from: `山田 花子 <${customer}>`,
      to: 'support@help.test',
      subject: 'プリンターが動きません',
      text: 'プリンターが動きません。助けてください。',
      headers: { 'Message-ID': `<${customerMid}>` },
    });
    await deliverRaw(app.smtp!.port, raw, { from: customer, to: ['support@help.test'] });
    const ticketId = (await waitInbound(app.ctx.db, customerMid)).ticket_id!;
    const byTicket = (m: ReceivedMail) => (header(m, 'Message-ID') ?? '').startsWith(`<rl.${ticketId}.`);
    const [notification] = await sink.waitFor((m) => to(alice.email)(m) && byTicket(m));
    await staffAnswers(notification!, '#status pending\nどの機種をお使いですか？');
    const [, question] = await sink.waitFor((m) => to(customer)(m) && byTicket(m), 2);
    expect((await ticket(ticketId)).status).toBe('pending');

    await runLifecycle(app.ctx, later(3 * DAY - MINUTE));
    expect(await lifecycleMailsTo(customer, ticketId)).toHaveLength(0);
    await runLifecycle(app.ctx, later(3 * DAY + MINUTE));
    await runLifecycle(app.ctx, later(3 * DAY + 2 * MINUTE)); // a second run: still one reminder
    expect(await lifecycleMailsTo(customer, ticketId)).toHaveLength(1);
    const [, , reminder] = await sink.waitFor((m) => to(customer)(m) && byTicket(m), 3);
    const r = await parse(reminder!);
    expect(r.subject).toBe('Re: プリンターが動きません');
    expect(r.text).toContain('ご返信をお待ちしております');
    expect(r.text).toContain(`#${ticketId}`);
    // Threaded under the mail that asked the question, with a reply address that reaches the ticket.
    expect(header(reminder!, 'In-Reply-To')).toBe(header(question!, 'Message-ID'));
    expect(r.replyTo?.value[0]?.address).toMatch(/^support\+/);
    expect(header(reminder!, 'Auto-Submitted')).toBe('auto-generated');
    expect((await ticket(ticketId)).status).toBe('pending');

    await runLifecycle(app.ctx, later(7 * DAY + MINUTE));
    expect((await ticket(ticketId)).status).toBe('solved');
    const [, , , solvedNote] = await sink.waitFor((m) => to(customer)(m) && byTicket(m), 4);
    expect((await parse(solvedNote!)).text).toContain('解決済みにしました');
  });

  it('an English customer gets the English reminder, and answering it stops the automation', async () => {
    const customer = `pending-en-${Date.now()}@customer.test`;
    const { ticketId, notification, byTicket } = await openTicket(customer, 'Waiting on you');
    await staffAnswers(notification, '#status pending\nWhich model do you have?');
    await runLifecycle(app.ctx, later(3 * DAY + MINUTE));
    const [, , reminder] = await sink.waitFor((m) => to(customer)(m) && byTicket(m), 3);
    expect((await parse(reminder!)).text).toContain('We are still waiting for your answer on request');

    expect((await customerAnswers(customer, reminder!, 'Model X-100.')).ticket_id).toBe(ticketId);
    expect((await ticket(ticketId)).status).toBe('open');
    await runLifecycle(app.ctx, later(8 * DAY));
    expect((await ticket(ticketId)).status).toBe('open');
    expect(await lifecycleMailsTo(customer, ticketId)).toHaveLength(1);
  });

  it('two workers running the automations at the same moment move and mail each ticket exactly once', async () => {
    const customer = `race-${Date.now()}@customer.test`;
    const { ticketId, notification } = await openTicket(customer, 'Race');
    await staffAnswers(notification, '#status pending\nAny news?');
    const at = later(3 * DAY + MINUTE);
    const runs = await Promise.all([runLifecycle(app.ctx, at), runLifecycle(app.ctx, at), runLifecycle(app.ctx, at)]);
    expect(runs.reduce((n, r) => n + r.reminded, 0)).toBeGreaterThanOrEqual(1);
    expect(await lifecycleMailsTo(customer, ticketId)).toHaveLength(1);
    const solveAt = later(7 * DAY + MINUTE);
    await Promise.all([runLifecycle(app.ctx, solveAt), runLifecycle(app.ctx, solveAt)]);
    const mails = await lifecycleMailsTo(customer, ticketId);
    expect(mails.map((m) => (m.payload as { event: string }).event).sort()).toEqual(['auto_solved', 'pending_reminder']);
  });
});

describe('the schedule', () => {
  let fast: TestApp;
  afterAll(() => fast?.teardown());

  it('a repeatable BullMQ job runs the automations by itself (short configured durations)', async () => {
    fast = await startTestApp({
      OUTBOUND_SMTP_URL: sink.url,
      STAFF_AUTH: 'token',
      DNS_SERVERS: '127.0.0.1:9',
      SOLVED_CLOSE_AFTER: '1s',
      LIFECYCLE_INTERVAL_MS: '1000',
    });
    const staff = await createUser(fast.ctx.db, { email: 'alice@corp.test', name: 'Alice Agent', role: 'staff' });
    const own = flow(() => ({ app: fast, sink, staffEmail: staff.email, dkim: undefined }));
    const customer = `scheduled-${Date.now()}@customer.test`;
    const { ticketId, notification } = await own.openTicket(customer, 'Scheduled close');
    await own.staffAnswers(notification, '#status solved\nDone.');
    const deadline = Date.now() + 20_000;
    let status = (await own.ticket(ticketId)).status;
    while (status !== 'closed' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      status = (await own.ticket(ticketId)).status;
    }
    expect(status).toBe('closed');
    const schedulers = await fast.ctx.queues.outbound.getJobSchedulers();
    expect(schedulers.map((s) => s.key)).toContain('ticket-lifecycle');
  });
});

describe('unconfirmed portal requests', () => {
  it("a lifecycle run deletes a visitor's submission (and its files) once its link has expired, and keeps a live one", async () => {
    const submission = (email: string, ttlMs: number) =>
      insertSubmission(app.ctx.db, {
        email,
        name: 'Visitor',
        locale: 'en',
        subject: 'pending',
        body: 'typed by a visitor',
        ccs: [],
        files: [{ filename: 'a.txt', contentType: 'text/plain', content: Buffer.from('file'), sha256: 'x'.repeat(64) }],
        tokenHash: Buffer.from(`${email}-hash`),
        ttlMs,
      });
    const stale = await submission(`stale-${Date.now()}@visitor.test`, 60 * MINUTE);
    const live = await submission(`live-${Date.now()}@visitor.test`, 3 * DAY);
    const ids = async (table: 'portal_submissions' | 'portal_submission_files') =>
      table === 'portal_submissions'
        ? (await app.ctx.db.selectFrom('portal_submissions').select('id').where('id', 'in', [stale.id, live.id]).execute()).map((r) => r.id)
        : (
            await app.ctx.db
              .selectFrom('portal_submission_files')
              .select('submission_id')
              .where('submission_id', 'in', [stale.id, live.id])
              .execute()
          ).map((r) => r.submission_id);
    await runLifecycle(app.ctx, later(2 * 60 * MINUTE));
    expect(await ids('portal_submissions')).toEqual([live.id]);
    expect(await ids('portal_submission_files')).toEqual([live.id]);
  });
});
