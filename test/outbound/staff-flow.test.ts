import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser } from '../../src/db/queries/users.js';
import { parseReplyAddress } from '../../src/mail/tokens.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { startDnsServer, type TestDnsServer } from './support/dns-server.js';
import { header, parse, startRelaySink, to, type ReceivedMail, type RelaySink } from './support/relay-sink.js';
import { deliverRaw, waitInbound } from './support/smtp-client.js';
import { buildMail, makeDkimKey } from './support/staff-mail.js';
import { bare, flow, mid } from './support/flow.js';

/**
 * The whole loop, end to end over real SMTP both ways: a customer mails
 * support → staff are notified → a staff member answers the notification
 * from their own mail server (DKIM-signed; SPF/DMARC served by a DNS server
 * the test controls) → the customer receives a threaded reply.
 */
const SECRET = 'test-secret-key-0123456789abcdef0123456789';
const key = makeDkimKey();
const otherKey = makeDkimKey();
let dns: TestDnsServer;
let sink: RelaySink;
let app: TestApp;
let alice: { id: number; email: string };

const dkim = { domainName: 'corp.test', keySelector: 'k1', privateKey: key.privateKey };

beforeAll(async () => {
  dns = await startDnsServer({
    'corp.test': { TXT: ['v=spf1 ip4:192.0.2.10 -all'] },
    'k1._domainkey.corp.test': { TXT: [key.txt] },
    '_dmarc.corp.test': { TXT: ['v=DMARC1; p=reject; adkim=r; aspf=r'] },
    'evil.test': { TXT: ['v=spf1 ip4:127.0.0.1 -all'] },
    'k1._domainkey.evil.test': { TXT: [otherKey.txt] },
  });
  sink = await startRelaySink();
  app = await startTestApp({ OUTBOUND_SMTP_URL: sink.url, DNS_SERVERS: dns.server, MAIL_FROM: 'Help Desk <support@help.test>' });
  const row = await createUser(app.ctx.db, { email: 'alice@corp.test', name: 'Alice Agent', role: 'staff' });
  alice = { id: row.id, email: row.email };
});
afterAll(async () => {
  await app?.teardown();
  await sink?.stop();
  await dns?.stop();
});

const { openTicket, staffAnswers, ticket, messages } = flow(() => ({ app, sink, staffEmail: alice.email, dkim }));

describe('staff reply by email', () => {
  it('customer mail → staff notified → DKIM-signed staff reply → customer and new CC get a threaded public comment', async () => {
    const customer = `carol-${randomBytes(3).toString('hex')}@customer.test`;
    const { ticketId, customerMid, ack, notification, byTicket } = await openTicket(customer, 'Printer on fire');
    expect(parseReplyAddress(SECRET, 'help.test', (await parse(notification)).replyTo!.value[0]!.address!)).toEqual({
      ticketId,
      userId: alice.id,
    });

    const dan = `dan-${randomBytes(3).toString('hex')}@customer.test`;
    const { inbound } = await staffAnswers(notification, `#status pending\n#cc add ${dan}\n\nWe are sending a fire engine.`);
    expect(inbound).toMatchObject({ status: 'processed', ticket_id: ticketId });
    expect(inbound.auth).toMatchObject({ ok: true, method: 'dmarc' });

    const [update] = await sink.waitFor((m) => to(customer)(m) && byTicket(m) && m !== ack);
    const p = await parse(update!);
    expect(p.text).toContain('We are sending a fire engine.');
    expect(p.text).toContain('Alice Agent wrote');
    // Commands and the quoted notification never reach the customer.
    expect(p.text).not.toContain('#status');
    expect(p.text).not.toContain('#cc');
    expect(p.text).not.toContain('On Monday, Help Desk wrote');
    expect(p.text).not.toContain('alice@corp.test');
    // Threaded: after our acknowledgement, rooted at the customer's first mail.
    expect(bare(header(update!, 'In-Reply-To'))).toBe(bare(header(ack, 'Message-ID')));
    const refs = (header(update!, 'References') ?? '').split(/\s+/).map(bare);
    expect(refs[0]).toBe(customerMid);
    expect(refs).toContain(bare(header(ack, 'Message-ID')));
    expect(p.subject).toBe('Re: Printer on fire');

    const [ccMail] = await sink.waitFor((m) => to(dan)(m) && byTicket(m));
    expect((await parse(ccMail!)).text).toContain('We are sending a fire engine.');
    expect((await ticket(ticketId)).status).toBe('pending');
    const msgs = await messages(ticketId);
    expect(msgs.at(-1)).toMatchObject({ visibility: 'public', body_text: 'We are sending a fire engine.', author_id: alice.id });
    // Staff never get their own reply back.
    expect(sink.received.filter((m) => to(alice.email)(m) && byTicket(m))).toHaveLength(1);

    // The customer answers the update: it threads back and staff are notified again.
    const customerReply = mid('cust2');
    const parsedUpdate = await parse(update!);
    const raw = await buildMail({
      from: customer,
      to: parsedUpdate.replyTo!.value[0]!.address!,
      subject: `Re: ${parsedUpdate.subject}`,
      text: 'Thanks, it is out!',
      inReplyTo: header(update!, 'Message-ID'),
      headers: { 'Message-ID': `<${customerReply}>` },
    });
    await deliverRaw(app.smtp!.port, raw, { from: customer, to: [parsedUpdate.replyTo!.value[0]!.address!] });
    expect(await waitInbound(app.ctx.db, customerReply)).toMatchObject({ status: 'processed', ticket_id: ticketId });
    await sink.waitFor((m) => to(alice.email)(m) && byTicket(m), 2);
    expect((await ticket(ticketId)).status).toBe('open');
  });

  it('#note makes an internal note: no mail to any customer; #status solved solves', async () => {
    const customer = `erin-${randomBytes(3).toString('hex')}@customer.test`;
    const { ticketId, notification, byTicket } = await openTicket(customer, 'Note test');
    const before = sink.received.filter((m) => to(customer)(m) && byTicket(m)).length;
    const { inbound } = await staffAnswers(notification, '#note\n#status solved\nCustomer is a VIP, handle gently.');
    expect(inbound.status).toBe('processed');
    expect((await messages(ticketId)).at(-1)).toMatchObject({ visibility: 'internal', body_text: 'Customer is a VIP, handle gently.' });
    expect((await ticket(ticketId)).status).toBe('solved');
    const outbox = await app.ctx.db
      .selectFrom('outbound_mails')
      .select('recipient')
      .where('ticket_id', '=', ticketId)
      .where('kind', '=', 'ticket_update')
      .execute();
    expect(outbox).toEqual([]);
    expect(sink.received.filter((m) => to(customer)(m) && byTicket(m)).length).toBe(before);
  });
});

describe('staff impersonation is held auth_failed and changes nothing', () => {
  async function expectRejected(
    ticketId: number,
    customer: string,
    byTicket: (m: ReceivedMail) => boolean,
    inbound: { status: string; reason: string | null },
    reason = 'auth_failed',
  ) {
    expect(inbound).toMatchObject({ status: 'held', reason });
    const t = await ticket(ticketId);
    expect(t.status).toBe('new');
    expect((await messages(ticketId)).length).toBe(1);
    const updates = await app.ctx.db
      .selectFrom('outbound_mails')
      .select('id')
      .where('ticket_id', '=', ticketId)
      .where('kind', '=', 'ticket_update')
      .execute();
    expect(updates).toEqual([]);
    expect(sink.received.filter((m) => to(customer)(m) && byTicket(m))).toHaveLength(1); // only the acknowledgement
  }

  it('spoofed From: the staff address, unsigned, from a host SPF does not allow', async () => {
    const customer = `f-${randomBytes(3).toString('hex')}@customer.test`;
    const { ticketId, notification, byTicket } = await openTicket(customer, 'Spoof 1');
    const { inbound } = await staffAnswers(notification, '#status solved\nRefund approved!', { signWith: null });
    await expectRejected(ticketId, customer, byTicket, inbound);
  });

  it("spoofed From signed by the attacker's own domain, with SPF passing for the attacker", async () => {
    const customer = `g-${randomBytes(3).toString('hex')}@customer.test`;
    const { ticketId, notification, byTicket } = await openTicket(customer, 'Spoof 2');
    const { inbound } = await staffAnswers(notification, 'Refund approved!', {
      signWith: { domainName: 'evil.test', keySelector: 'k1', privateKey: otherKey.privateKey },
      mailFrom: 'bounce@evil.test',
    });
    await expectRejected(ticketId, customer, byTicket, inbound);
  });

  it('injected Authentication-Results claiming dkim/spf/dmarc pass', async () => {
    const customer = `h-${randomBytes(3).toString('hex')}@customer.test`;
    const { ticketId, notification, byTicket } = await openTicket(customer, 'Spoof 3');
    const { inbound } = await staffAnswers(notification, 'Refund approved!', {
      signWith: null,
      headers: {
        'Authentication-Results':
          'help.test; dkim=pass header.d=corp.test header.s=k1; spf=pass smtp.mailfrom=alice@corp.test; dmarc=pass header.from=corp.test',
      },
    });
    await expectRejected(ticketId, customer, byTicket, inbound);
  });

  it('spoofed Reply-To: an authenticated outsider naming the staff address in Reply-To is never staff', async () => {
    const customer = `i-${randomBytes(3).toString('hex')}@customer.test`;
    const { ticketId, notification, byTicket } = await openTicket(customer, 'Spoof 4');
    const { inbound } = await staffAnswers(notification, '#status solved\nRefund approved!', {
      from: 'attacker@evil.test',
      replyTo: 'alice@corp.test',
      signWith: { domainName: 'evil.test', keySelector: 'k1', privateKey: otherKey.privateKey },
      mailFrom: 'attacker@evil.test',
    });
    // Not staff, not a participant: held before anything is written.
    await expectRejected(ticketId, customer, byTicket, inbound, 'not_participant');
  });
});
