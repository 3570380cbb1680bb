import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawDialogue } from '../inbound/support/smtp.js';
import { header } from '../outbound/support/relay-sink.js';
import { uniqueEmail } from '../portal/support.js';
import { makeUser, openTicket, replyAddressOf, startRig, submit, ticketState, toAddress, SUPPORT, type Rig } from './support/rig.js';
import { expectUntouched, staffAddress, staffWorld, type TicketSnapshot } from './support/staff.js';

/**
 * Forged and replayed reply tokens. Every mail we send carries a signed
 * reply address `support+<ticket>.<user>.<sig>@help.test`, a signed
 * Message-ID `rl.<ticket>.<nonce>.<sig>@help.test` and a signed body tag.
 * A forged one (bad signature, ids swapped between tokens) must never
 * thread into a ticket; a genuine one replayed by someone who is not on the
 * ticket must be held as not_participant without touching it.
 */
const world = staffWorld();
let rig: Rig;
let alice: string;

interface Victim {
  ticketId: number;
  email: string;
  subject: string;
  replyTo: string;
  staffReplyTo: string;
  ack: NonNullable<Awaited<ReturnType<typeof openTicket>>['ack']>;
  before: TicketSnapshot;
  requesterId: number;
}
let carol: Victim;
let dave: Victim;

async function victim(): Promise<Victim> {
  const t = await openTicket(rig, { staff: [alice] });
  return {
    ticketId: t.ticketId,
    email: t.email,
    subject: t.subject,
    ack: t.ack!,
    replyTo: await replyAddressOf(t.ack!),
    staffReplyTo: await replyAddressOf(t.notifications[alice]!),
    before: await ticketState(rig.db, t.ticketId),
    requesterId: t.requester.id,
  };
}

beforeAll(async () => {
  rig = await startRig({}, { zone: world.zone });
  alice = (await makeUser(rig.db, { role: 'staff', name: 'Alice Agent', email: staffAddress('alice') })).email;
  carol = await victim();
  dave = await victim();
});
afterAll(() => rig?.teardown());

const token = (address: string) => {
  const m = /^support\+(\d+)\.(\d+)\.([a-z2-7]{16})@help\.test$/.exec(address);
  if (!m) throw new Error(`not a reply address: ${address}`);
  return { ticket: m[1]!, user: m[2]!, sig: m[3]! };
};
const secret = () => `TOKEN${randomBytes(4).toString('hex')}`;
const mails = (email: string) => rig.sink.received.filter(toAddress(email)).length;

async function inboundCount(): Promise<number> {
  const r = await rig.db
    .selectFrom('inbound_messages')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

describe('forged reply addresses die at RCPT TO', () => {
  it('wrong signature, signatures moved between tickets or users, or another domain: 550 5.1.1 and nothing stored', async () => {
    const c = token(carol.replyTo);
    const d = token(dave.replyTo);
    const forged = [
      `support+${c.ticket}.${c.user}.${'a'.repeat(16)}@help.test`, // made-up signature
      `support+${c.ticket}.${c.user}.${c.sig.slice(0, 15)}${c.sig.endsWith('a') ? 'b' : 'a'}@help.test`, // last character changed
      `support+${c.ticket}.${d.user}.${d.sig}@help.test`, // Dave's signature, Carol's ticket
      `support+${d.ticket}.${c.user}.${d.sig}@help.test`, // Dave's signature, Carol as user
      `support+${c.ticket}.${c.user}.${d.sig}@help.test`, // Carol's ids, Dave's signature
      `support+${d.user}.${d.ticket}.${d.sig}@help.test`, // ids swapped inside one token
      `support+${c.ticket}.${c.user}.${c.sig}@evil.test`, // genuine token, foreign domain
      `support+${c.ticket}.${c.user}@help.test`, // no signature
    ];
    const before = await inboundCount();
    for (const rcpt of forged) {
      const replies = await rawDialogue(rig.smtpPort, ['EHLO mx.evil.test', 'MAIL FROM:<mallory@evil.test>', `RCPT TO:<${rcpt}>`, 'QUIT']);
      expect(replies[3], rcpt).toMatch(/^550 5\.1\.1 /);
    }
    expect(await inboundCount()).toBe(before);
  });
});

describe('forged threading evidence in headers and body', () => {
  it('a forged token in the To header (envelope to support@), a forged Message-ID and a forged body tag all open a new ticket instead', async () => {
    const c = token(carol.replyTo);
    const ourId = header(carol.ack, 'Message-ID')!.replace(/^<|>$/g, '');
    const [, , nonce, sig] = ourId.split('@')[0]!.split('.');
    const forgedIds = [
      `<rl.${carol.ticketId}.${nonce}.${'a'.repeat(16)}@help.test>`, // bad signature
      `<rl.${dave.ticketId}.${nonce}.${sig}@help.test>`, // Carol's signature on Dave's ticket id
    ];
    const mailsBefore = mails(carol.email);
    const s = secret();
    for (const [i, inReplyTo] of forgedIds.entries()) {
      const row = await submit(rig, {
        from: uniqueEmail('mallory'),
        to: `support+${c.ticket}.${c.user}.${'b'.repeat(16)}@help.test`,
        subject: `Re: ${carol.subject}`,
        text: `Forged ${s}\n\n[RL-${carol.ticketId}-${'c'.repeat(16)}]\n[RL-${dave.ticketId}-${sig}]`,
        inReplyTo,
        references: [inReplyTo],
      });
      expect(row.status, `forged id ${i}`).toBe('processed');
      expect(row.ticket_id).not.toBe(carol.ticketId);
      expect(row.ticket_id).not.toBe(dave.ticketId);
    }
    await expectUntouched(rig, carol, carol.before, mailsBefore, s);
    await expectUntouched(rig, dave, dave.before, mails(dave.email), s);
  });
});

describe('genuine tokens replayed by someone not on the ticket', () => {
  async function replay(from: string, to: string, extra: { inReplyTo?: string } = {}) {
    const s = secret();
    const row = await submit(
      rig,
      {
        from,
        to,
        subject: `Re: ${carol.subject}`,
        text: `#status solved\n\nPlease cancel everything ${s}`,
        ...extra,
        references: extra.inReplyTo ? [extra.inReplyTo] : undefined,
      },
      { to: [to] },
    );
    return { row, s };
  }

  it("a stranger mailing Carol's own reply address is held not_participant; Carol's ticket and inbox are untouched", async () => {
    const mailsBefore = mails(carol.email);
    const { row, s } = await replay(uniqueEmail('mallory'), carol.replyTo);
    expect(row).toMatchObject({ status: 'held', reason: 'not_participant', ticket_id: carol.ticketId });
    await expectUntouched(rig, carol, carol.before, mailsBefore, s);
  });

  it("another customer (Dave, requester of his own ticket) using Carol's token is held not_participant", async () => {
    const mailsBefore = mails(carol.email);
    const { row, s } = await replay(dave.email, carol.replyTo);
    expect(row).toMatchObject({ status: 'held', reason: 'not_participant', ticket_id: carol.ticketId });
    await expectUntouched(rig, carol, carol.before, mailsBefore, s);
  });

  it("a customer using the staff member's reply address is held not_participant: the token does not make anyone staff", async () => {
    const mailsBefore = mails(carol.email);
    const { row, s } = await replay(dave.email, carol.staffReplyTo);
    expect(row).toMatchObject({ status: 'held', reason: 'not_participant', ticket_id: carol.ticketId });
    await expectUntouched(rig, carol, carol.before, mailsBefore, s);
  });

  it('a stranger replaying one of our genuine Message-IDs (to support@, In-Reply-To) is held not_participant', async () => {
    const mailsBefore = mails(carol.email);
    const { row, s } = await replay(uniqueEmail('mallory'), SUPPORT, { inReplyTo: header(carol.ack, 'Message-ID')! });
    expect(row).toMatchObject({ status: 'held', reason: 'not_participant', ticket_id: carol.ticketId });
    await expectUntouched(rig, carol, carol.before, mailsBefore, s);
  });

  it('control: Carol herself on her reply address is threaded into her ticket', async () => {
    const row = await submit(
      rig,
      { from: carol.email, to: carol.replyTo, subject: `Re: ${carol.subject}`, text: 'Any news?' },
      { to: [carol.replyTo] },
    );
    expect(row).toMatchObject({ status: 'processed', ticket_id: carol.ticketId });
    const state = await ticketState(rig.db, carol.ticketId);
    expect(state.messages.at(-1)).toMatchObject({ author_id: carol.requesterId, body_text: 'Any news?' });
  });
});
