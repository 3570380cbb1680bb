import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser } from '../../src/db/queries/users.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { flow, mid } from './support/flow.js';
import { parse, startRelaySink, to, type ReceivedMail, type RelaySink } from './support/relay-sink.js';
import { deliverRaw, waitInbound } from './support/smtp-client.js';
import { buildMail } from './support/staff-mail.js';

/**
 * Staff working the queue from their mail client: ownership (#assign, the
 * first public replier), who is notified once a ticket has an owner, and
 * priority and on-hold by mail. Real SMTP both ways; staff are identified by
 * their own reply tokens (STAFF_AUTH=token).
 */
let sink: RelaySink;
let app: TestApp;
let alice: { id: number; email: string };
let bob: { id: number; email: string };
const { openTicket, staffAnswers, ticket } = flow(() => ({ app, sink, staffEmail: alice.email, dkim: undefined }));

beforeAll(async () => {
  sink = await startRelaySink();
  app = await startTestApp({ OUTBOUND_SMTP_URL: sink.url, STAFF_AUTH: 'token', DNS_SERVERS: '127.0.0.1:9' });
  alice = await createUser(app.ctx.db, { email: 'alice@corp.test', name: 'Alice Agent', role: 'staff' });
  bob = await createUser(app.ctx.db, { email: 'bob@corp.test', name: 'Bob Agent', role: 'staff', locale: 'ja' });
});
afterAll(async () => {
  await app?.teardown();
  await sink?.stop();
});

/** Staff notifications queued for one ticket after outbox row `after`, by recipient. */
async function notifiedSince(ticketId: number, after: number): Promise<string[]> {
  const rows = await app.ctx.db
    .selectFrom('outbound_mails')
    .select('recipient')
    .where('ticket_id', '=', ticketId)
    .where('kind', '=', 'staff_notification')
    .where('id', '>', after)
    .orderBy('recipient')
    .execute();
  return rows.map((r) => r.recipient);
}

async function lastOutboxId(): Promise<number> {
  const r = await app.ctx.db
    .selectFrom('outbound_mails')
    .select((eb) => eb.fn.max('id').as('id'))
    .executeTakeFirstOrThrow();
  return Number(r.id ?? 0);
}

/** The customer writes again on the ticket, through the reply address of a mail they received. */
async function customerWrites(customer: string, mail: ReceivedMail, text: string) {
  const parsed = await parse(mail);
  const replyTo = parsed.replyTo!.value[0]!.address!;
  const id = mid('cust');
  const raw = await buildMail({
    from: customer,
    to: replyTo,
    subject: `Re: ${parsed.subject}`,
    text,
    headers: { 'Message-ID': `<${id}>` },
  });
  await deliverRaw(app.smtp!.port, raw, { from: customer, to: [replyTo] });
  return waitInbound(app.ctx.db, id);
}

describe('ownership by mail', () => {
  it('the first agent to answer publicly owns the ticket; then only the owner and those who worked on it are notified', async () => {
    const customer = `own-${Date.now()}@customer.test`;
    const { ticketId, notification, ack } = await openTicket(customer, 'Who owns me');
    // Unassigned: every agent heard about the new ticket.
    expect(await notifiedSince(ticketId, 0)).toEqual([alice.email, bob.email]);

    await staffAnswers(notification, 'Looking into it.');
    expect((await ticket(ticketId)).assignee_id).toBe(alice.id);

    let mark = await lastOutboxId();
    expect((await customerWrites(customer, ack, 'Any news?')).ticket_id).toBe(ticketId);
    expect(await notifiedSince(ticketId, mark)).toEqual([alice.email]);

    // Alice hands it to Bob: now Bob (the owner) and Alice (who answered) hear about updates.
    await staffAnswers(notification, `#assign ${bob.email}\nHanding over to Bob.`);
    expect((await ticket(ticketId)).assignee_id).toBe(bob.id);
    mark = await lastOutboxId();
    await customerWrites(customer, ack, 'Hello Bob?');
    expect(await notifiedSince(ticketId, mark)).toEqual([alice.email, bob.email]);

    // #unassign: back to everyone.
    await staffAnswers(notification, '#unassign\n#note back to the queue');
    expect((await ticket(ticketId)).assignee_id).toBeNull();
    mark = await lastOutboxId();
    await customerWrites(customer, ack, 'Anyone?');
    expect(await notifiedSince(ticketId, mark)).toEqual([alice.email, bob.email]);
    // Only a staff account can own a ticket: a customer's address is ignored.
    await staffAnswers(notification, `#assign ${customer}\n#note try the customer`);
    expect((await ticket(ticketId)).assignee_id).toBeNull();
  });

  it('#assign me takes the ticket with an internal note, no public reply needed', async () => {
    const customer = `me-${Date.now()}@customer.test`;
    const { ticketId, byTicket } = await openTicket(customer, 'Mine');
    const [bobsNote] = await sink.waitFor((m) => to(bob.email)(m) && byTicket(m));
    const asBob = flow(() => ({ app, sink, staffEmail: bob.email, dkim: undefined }));
    await asBob.staffAnswers(bobsNote!, '#assign me\n#note I will take this one', {
      from: `Bob Agent <${bob.email}>`,
      mailFrom: bob.email,
    });
    expect((await ticket(ticketId)).assignee_id).toBe(bob.id);
  });
});

describe('priority and on-hold by mail', () => {
  it('sets priority and on-hold; staff subjects show both, the customer sees on-hold as open', async () => {
    const customer = `prio-${Date.now()}@customer.test`;
    const { ticketId, notification, ack, byTicket } = await openTicket(customer, 'Server down');
    await staffAnswers(notification, '#priority urgent\n#status on-hold\nWe are waiting for the data centre.');
    expect(await ticket(ticketId)).toMatchObject({ priority: 'urgent', status: 'hold' });

    // The customer's update calls it open (Zendesk shows on-hold to end users as open).
    const [, update] = await sink.waitFor((m) => to(customer)(m) && byTicket(m), 2);
    expect((await parse(update!)).text).toContain('Status: Open');

    // A customer reply leaves on-hold alone (staff wait on a third party, not on the customer) and the owner's subject says so.
    await customerWrites(customer, ack, 'Thanks, any ETA?');
    expect((await ticket(ticketId)).status).toBe('hold');
    const mails = await sink.waitFor((m) => to(alice.email)(m) && byTicket(m), 2);
    expect((await parse(mails[1]!)).subject).toBe('[#' + ticketId + '] Server down (On-hold, Urgent)');
  });
});
