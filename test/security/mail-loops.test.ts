import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, uniqueEmail } from '../portal/support.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { autoRespond, startStrippingRelay, type ResponderMode } from './support/loops.js';
import { makeUser, ofTicket, settle, startRig, submit, toAddress, SUPPORT, TRUSTED_CUSTOMERS, type Rig } from './support/rig.js';
import { staffAddress, staffWorld } from './support/staff.js';

/**
 * Mail loops: every mail we send to an auto-responder comes straight back.
 * With a responder that says Auto-Submitted the loop must stop at once; with
 * one that looks exactly like a person — and two of them on one ticket, each
 * answering the other's update — the loop breakers must bound it. Two
 * replyline instances writing to each other must stop after a couple of
 * mails, even through a relay that strips every automatic-mail marker.
 * Each scenario prints its counts.
 */
const PER_TICKET = 4;
let rig: Rig;
let staff: string;
const started: Array<{ stop?(): unknown; teardown?(): Promise<void> }> = [];

const world = staffWorld();
let alice: string;

beforeAll(async () => {
  rig = await startRig(
    { BREAKER_PER_TICKET: String(PER_TICKET), BREAKER_WINDOW_MS: '600000', ACK_MAX_PER_SENDER_PER_HOUR: '3' },
    { zone: { ...world.zone, ...TRUSTED_CUSTOMERS } },
  );
  staff = (await makeUser(rig.db, { role: 'staff', email: uniqueEmail('staff') })).email;
  alice = (await makeUser(rig.db, { role: 'staff', name: 'Alice Agent', email: staffAddress('alice') })).email;
});
afterAll(async () => {
  for (const s of started.reverse()) {
    s.stop?.();
    await s.teardown?.();
  }
  await rig?.teardown();
});

async function outboxOf(ticketId: number) {
  return rig.db
    .selectFrom('outbound_mails')
    .select(['recipient', 'kind', 'status', 'last_error'])
    .where('ticket_id', '=', ticketId)
    .execute();
}

/** A responder writes to support first (with a colleague, also a responder, in Cc), then every mail it gets is answered. */
async function loopWithResponders(mode: ResponderMode) {
  const requester = uniqueEmail(`${mode}-a`);
  const colleague = uniqueEmail(`${mode}-b`);
  const responder = autoRespond(
    rig.sink,
    () => rig.smtpPort,
    new Map([
      [requester, mode],
      [colleague, mode],
    ]),
  );
  started.push(responder);
  const first = await submit(rig, {
    from: requester,
    to: SUPPORT,
    cc: colleague,
    subject: `Order status (${mode})`,
    text: 'Where is my order?',
  });
  expect(first.status).toBe('processed');
  const ticketId = first.ticket_id!;
  await settle([rig], { quietMs: 1500, timeoutMs: 60_000, idle: responder.idle });
  responder.stop();
  const mails = rig.sink.received.filter(ofTicket(ticketId));
  const inbound = await rig.db
    .selectFrom('inbound_messages')
    .select(['status', 'reason', 'from_address'])
    .where('from_address', 'in', [requester, colleague])
    .execute();
  const outbox = await outboxOf(ticketId);
  const counts = {
    toRequester: mails.filter(toAddress(requester)).length,
    toColleague: mails.filter(toAddress(colleague)).length,
    toStaff: mails.filter(toAddress(staff)).length,
    autoReplies: [...responder.replies.values()].reduce((a, b) => a + b, 0),
    inboundProcessed: inbound.filter((r) => r.status === 'processed').length,
    inboundHeld: inbound.filter((r) => r.status === 'held').length,
    suppressed: outbox.filter((r) => r.status === 'suppressed').length,
  };
  console.log(`mail loop with ${mode} auto-responders: ${JSON.stringify(counts)}`);
  return { ticketId, counts, inbound, outbox, requester, colleague };
}

describe('a loop with an external auto-responder', () => {
  it('a responder marking its replies Auto-Submitted: its reply is held auto_reply and nothing more is sent', async () => {
    const { counts, inbound } = await loopWithResponders('rfc3834');
    expect(counts.toRequester).toBe(1); // the acknowledgement, answered once
    expect(counts.toColleague).toBe(0);
    expect(counts.autoReplies).toBe(1);
    expect(inbound.filter((r) => r.status === 'held').map((r) => r.reason)).toEqual(['auto_reply']);
  }, 90_000);

  it("two responders that look like people, answering each other's updates on one ticket: bounded by the per-ticket breaker, then silence", async () => {
    const { counts, outbox } = await loopWithResponders('dumb');
    // The loop really ran (each answered more than once) …
    expect(counts.autoReplies).toBeGreaterThan(2);
    // … and was cut by the breaker, not by luck: mail was suppressed with its reason.
    expect(counts.suppressed).toBeGreaterThan(0);
    expect(outbox.filter((r) => r.status === 'suppressed').every((r) => /^loop_breaker_/.test(r.last_error ?? ''))).toBe(true);
    expect(counts.toRequester).toBeLessThanOrEqual(PER_TICKET);
    expect(counts.toColleague).toBeLessThanOrEqual(PER_TICKET);
    expect(counts.toStaff).toBeLessThanOrEqual(PER_TICKET);
    expect(counts.autoReplies).toBeLessThanOrEqual(counts.toRequester + counts.toColleague);
  }, 90_000);

  it("a staff member's out-of-office (genuinely DKIM-signed, no automatic markers) and a customer's answering each other: bounded, then silence", async () => {
    const customer = uniqueEmail('ooo-customer');
    const responder = autoRespond(
      rig.sink,
      () => rig.smtpPort,
      new Map<string, ResponderMode>([
        [customer, 'dumb'],
        [alice, 'dumb'],
      ]),
      {
        dkim: (address) => (address === alice ? world.staffDkim : undefined),
      },
    );
    started.push(responder);
    const first = await submit(rig, { from: customer, to: SUPPORT, subject: 'Invoice question', text: 'Is my invoice paid?' });
    expect(first.status).toBe('processed');
    const ticketId = first.ticket_id!;
    await settle([rig], { quietMs: 1500, timeoutMs: 60_000, idle: responder.idle });
    responder.stop();
    const mails = rig.sink.received.filter(ofTicket(ticketId));
    const outbox = await outboxOf(ticketId);
    const staffReplies = await rig.db
      .selectFrom('inbound_messages')
      .select(['status', 'reason'])
      .where('from_address', '=', alice)
      .where('ticket_id', '=', ticketId)
      .execute();
    const counts = {
      toCustomer: mails.filter(toAddress(customer)).length,
      toAlice: mails.filter(toAddress(alice)).length,
      autoReplies: [...responder.replies.values()].reduce((a, b) => a + b, 0),
      staffRepliesProcessed: staffReplies.filter((r) => r.status === 'processed').length,
      suppressed: outbox.filter((r) => r.status === 'suppressed').length,
    };
    console.log(`mail loop between a staff and a customer out-of-office: ${JSON.stringify(counts)}`);
    expect(counts.staffRepliesProcessed).toBeGreaterThan(0); // the signed out-of-office really counted as staff
    expect(counts.suppressed).toBeGreaterThan(0);
    expect(counts.toCustomer).toBeLessThanOrEqual(PER_TICKET);
    expect(counts.toAlice).toBeLessThanOrEqual(PER_TICKET);
  }, 90_000);
});

describe('a loop with a second replyline instance', () => {
  async function pair(strip: boolean) {
    const [portA, portB] = [await freePort(), await freePort()];
    const toB = strip ? await startStrippingRelay(portB) : null;
    const toA = strip ? await startStrippingRelay(portA) : null;
    if (toB) started.push({ teardown: toB.stop });
    if (toA) started.push({ teardown: toA.stop });
    const a = await startTestApp({
      SUPPORT_ADDRESSES: 'support@a.test',
      MAIL_DOMAIN: 'a.test',
      SMTP_LISTEN: `127.0.0.1:${portA}`,
      OUTBOUND_SMTP_URL: toB?.url ?? `smtp://127.0.0.1:${portB}`,
    });
    started.push({ teardown: () => a.teardown() });
    const b = await startTestApp({
      SUPPORT_ADDRESSES: 'support@b.test',
      MAIL_DOMAIN: 'b.test',
      SMTP_LISTEN: `127.0.0.1:${portB}`,
      OUTBOUND_SMTP_URL: toA?.url ?? `smtp://127.0.0.1:${portA}`,
    });
    started.push({ teardown: () => b.teardown() });
    return { a, b };
  }

  async function counts(app: TestApp) {
    const sent = await app.ctx.db.selectFrom('outbound_mails').select('id').where('status', '=', 'sent').execute();
    const inbound = await app.ctx.db.selectFrom('inbound_messages').select(['status', 'reason']).execute();
    const tickets = await app.ctx.db.selectFrom('tickets').select('id').execute();
    return {
      sent: sent.length,
      inbound: inbound.length,
      held: inbound.filter((r) => r.status === 'held').map((r) => r.reason),
      tickets: tickets.length,
    };
  }

  for (const strip of [false, true]) {
    it(`A and B relaying to each other stop after at most two mails${strip ? ', even through a relay that strips Auto-Submitted and our loop header' : ''}`, async () => {
      const { a, b } = await pair(strip);
      // Someone at B writes to A from B's shared support address.
      const first = await submit(
        { db: a.ctx.db, smtpPort: a.smtp!.port },
        { from: 'Support B <support@b.test>', to: 'support@a.test', subject: 'Hello from B', text: 'Can you help?' },
        { to: ['support@a.test'] },
      );
      expect(first.status).toBe('processed');
      await settle(
        [
          { db: a.ctx.db, app: a },
          { db: b.ctx.db, app: b },
        ],
        { quietMs: 2000, timeoutMs: 60_000 },
      );
      const ca = await counts(a);
      const cb = await counts(b);
      console.log(`two instances${strip ? ' (stripping relay)' : ''}: A ${JSON.stringify(ca)} B ${JSON.stringify(cb)}`);
      expect(ca.sent).toBeGreaterThanOrEqual(1); // A did acknowledge the human mail
      expect(ca.sent + cb.sent).toBeLessThanOrEqual(2);
      expect(ca.inbound + cb.inbound).toBeLessThanOrEqual(3);
      // Pooled clients keep a session open on the other listener; drop them before teardown.
      a.ctx.transport.close();
      b.ctx.transport.close();
    }, 90_000);
  }
});
