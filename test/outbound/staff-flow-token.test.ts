import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser } from '../../src/db/queries/users.js';
import { makeReplyAddress } from '../../src/mail/tokens.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { flow } from './support/flow.js';
import { parse, to, startRelaySink, type RelaySink } from './support/relay-sink.js';

/**
 * STAFF_AUTH=token: behind a relay that already authenticates mail, staff
 * identity comes from a valid per-staff reply token plus a matching From.
 * Mail here is unsigned and SPF would fail: only the token counts.
 */
const SECRET = 'test-secret-key-0123456789abcdef0123456789';
let sink: RelaySink;
let app: TestApp;
let alice: { id: number; email: string };
let bob: { id: number; email: string };
const { openTicket, staffAnswers, ticket, messages } = flow(() => ({ app, sink, staffEmail: alice.email, dkim: undefined }));

beforeAll(async () => {
  sink = await startRelaySink();
  // An unreachable resolver: token mode must not need DNS at all.
  app = await startTestApp({ OUTBOUND_SMTP_URL: sink.url, STAFF_AUTH: 'token', DNS_SERVERS: '127.0.0.1:9' });
  alice = await createUser(app.ctx.db, { email: 'alice@corp.test', name: 'Alice Agent', role: 'staff' });
  bob = await createUser(app.ctx.db, { email: 'bob@corp.test', name: 'Bob Agent', role: 'staff' });
});
afterAll(async () => {
  await app?.teardown();
  await sink?.stop();
});

describe('STAFF_AUTH=token', () => {
  it("accepts an unsigned staff reply to the staff member's own reply address and mails the customer", async () => {
    const customer = `t1-${Date.now()}@customer.test`;
    const { ticketId, notification, byTicket } = await openTicket(customer, 'Token mode');
    const { inbound } = await staffAnswers(notification, '#status solved\nAll fixed.');
    expect(inbound).toMatchObject({ status: 'processed', ticket_id: ticketId });
    expect(inbound.auth).toMatchObject({ ok: true, method: 'token' });
    const [, update] = await sink.waitFor((m) => to(customer)(m) && byTicket(m), 2); // acknowledgement, then the reply
    expect((await parse(update!)).text).toContain('All fixed.');
    expect((await ticket(ticketId)).status).toBe('solved');
  });

  it("holds auth_failed: a forged token, another staff member's token, and the right token with a different From", async () => {
    const customer = `t2-${Date.now()}@customer.test`;
    const { ticketId, notification } = await openTicket(customer, 'Token forgery');
    const forged = `support+${ticketId}.${alice.id}.aaaaaaaaaaaaaaaa@help.test`;
    // The listener refuses a forged reply address at RCPT; the header still names it, delivery goes to support@.
    const a = await staffAnswers(notification, '#status solved\nforged', { to: forged, rcpt: 'support@help.test' });
    expect(a.inbound).toMatchObject({ status: 'held', reason: 'auth_failed' });

    const bobs = makeReplyAddress(SECRET, 'support', 'help.test', { ticketId, userId: bob.id });
    const b = await staffAnswers(notification, '#status solved\nwrong token', { to: bobs, rcpt: bobs });
    expect(b.inbound).toMatchObject({ status: 'held', reason: 'auth_failed' });

    // Bob's From on Alice's token: the token is valid but not his.
    const c = await staffAnswers(notification, '#status solved\nnot mine', { from: 'bob@corp.test', mailFrom: 'bob@corp.test' });
    expect(c.inbound).toMatchObject({ status: 'held', reason: 'auth_failed' });

    expect((await ticket(ticketId)).status).toBe('new');
    expect(await messages(ticketId)).toHaveLength(1);
  });
});
