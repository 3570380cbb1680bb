import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { header } from '../outbound/support/relay-sink.js';
import { uniqueEmail } from '../portal/support.js';
import {
  makeUser,
  openTicket,
  replyAddressOf,
  settle,
  startRig,
  submit,
  ticketState,
  toAddress,
  SUPPORT,
  type Rig,
} from './support/rig.js';
import { expectUntouched, staffAddress, staffWorld } from './support/staff.js';

/**
 * Spoofed Reply-To: Reply-To is only a hint for a human's mail client. It
 * must never make a message count as staff, as another customer, or as a
 * reply to someone else's ticket, and we must never mail an address just
 * because a stranger put it in Reply-To (that would make us a spam cannon).
 */
const world = staffWorld();
let rig: Rig;
let alice: string;
let aliceId: number;

beforeAll(async () => {
  rig = await startRig({ STAFF_AUTH: 'dmarc' }, { zone: world.zone });
  const staff = await makeUser(rig.db, { role: 'staff', name: 'Alice Agent', email: staffAddress('alice') });
  alice = staff.email;
  aliceId = staff.id;
});
afterAll(() => rig?.teardown());

const secret = () => `REPLYTO${randomBytes(4).toString('hex')}`;

async function outboxTo(address: string) {
  return rig.db.selectFrom('outbound_mails').select(['kind', 'ticket_id']).where('recipient', '=', address).execute();
}

describe('spoofed Reply-To', () => {
  it("a stranger's new mail with Reply-To naming staff and a bystander: an ordinary ticket of the stranger, commands ignored, nobody in Reply-To mailed", async () => {
    const stranger = uniqueEmail('mallory');
    const bystander = uniqueEmail('bystander');
    const s = secret();
    const row = await submit(rig, {
      from: stranger,
      to: SUPPORT,
      replyTo: [alice, bystander],
      subject: `Urgent ${s}`,
      text: `#status solved\n#cc add ${uniqueEmail('evil')}\n\nPlease process ${s}.`,
    });
    expect(row.status).toBe('processed');
    await settle([rig]);
    const state = await ticketState(rig.db, row.ticket_id!);
    const requester = await rig.db
      .selectFrom('users')
      .select(['email', 'role'])
      .where('id', '=', state.ticket.requester_id)
      .executeTakeFirstOrThrow();
    expect(requester).toEqual({ email: stranger, role: 'customer' });
    expect(state.ticket.status).toBe('new');
    expect(state.participants).toHaveLength(1); // no #cc took effect
    expect(state.messages.map((m) => m.author_id)).not.toContain(aliceId);
    // The acknowledgement goes to the From address, never to Reply-To.
    expect(await outboxTo(bystander)).toEqual([]);
    expect((await outboxTo(alice)).map((r) => r.kind)).toEqual(['staff_notification']);
    expect(rig.sink.received.filter(toAddress(bystander))).toEqual([]);
    expect(rig.sink.received.filter(toAddress(stranger))).toHaveLength(1);
  });

  it("a stranger replying into someone else's thread with Reply-To set to the staff address is held not_participant; the ticket is untouched", async () => {
    const t = await openTicket(rig, { staff: [alice] });
    const before = await ticketState(rig.db, t.ticketId);
    const mailsBefore = rig.sink.received.filter(toAddress(t.email)).length;
    const s = secret();
    const ackId = header(t.ack!, 'Message-ID')!;
    const row = await submit(rig, {
      from: uniqueEmail('mallory'),
      to: SUPPORT,
      replyTo: alice,
      subject: `Re: ${t.subject}`,
      text: `#status solved\n\nRefund approved ${s}`,
      inReplyTo: ackId,
      references: [t.messageId, ackId],
      dkim: world.evilDkim,
    });
    expect(row).toMatchObject({ status: 'held', reason: 'not_participant', ticket_id: t.ticketId });
    await expectUntouched(rig, t, before, mailsBefore, s);
  });

  it("a stranger's mail whose Reply-To is another customer's signed reply address neither threads into that ticket nor speaks as that customer", async () => {
    const t = await openTicket(rig, { staff: [alice] });
    const carolReplyAddress = await replyAddressOf(t.ack!);
    const before = await ticketState(rig.db, t.ticketId);
    const mailsBefore = rig.sink.received.filter(toAddress(t.email)).length;
    const stranger = uniqueEmail('mallory');
    const s = secret();
    const row = await submit(rig, {
      from: stranger,
      to: SUPPORT,
      replyTo: carolReplyAddress,
      subject: `Re: ${t.subject}`,
      text: `Cancel my order ${s}`,
    });
    expect(row.status).toBe('processed');
    expect(row.ticket_id).not.toBe(t.ticketId);
    const theirs = await ticketState(rig.db, row.ticket_id!);
    const requester = await rig.db
      .selectFrom('users')
      .select('email')
      .where('id', '=', theirs.ticket.requester_id)
      .executeTakeFirstOrThrow();
    expect(requester.email).toBe(stranger);
    expect(theirs.participants.map((p) => p.user_id)).not.toContain(t.requester.id);
    await expectUntouched(rig, t, before, mailsBefore, s);
  });

  it('the requester herself with Reply-To set to staff stays a customer: staff commands are not applied, the message is hers', async () => {
    const t = await openTicket(rig, { staff: [alice] });
    const replyTo = await replyAddressOf(t.ack!);
    const ccAttempt = uniqueEmail('added');
    const row = await submit(
      rig,
      {
        from: t.email,
        to: replyTo,
        replyTo: alice,
        subject: `Re: ${t.subject}`,
        text: `#status solved\n#note\n#cc add ${ccAttempt}\n\nThanks!`,
      },
      { to: [replyTo] },
    );
    expect(row).toMatchObject({ status: 'processed', ticket_id: t.ticketId });
    const state = await ticketState(rig.db, t.ticketId);
    const last = state.messages.at(-1)!;
    expect(last).toMatchObject({ author_id: t.requester.id, visibility: 'public' });
    expect(last.body_text).toContain('#status solved');
    expect(state.ticket.status).not.toBe('solved');
    const cc = await rig.db.selectFrom('users').select('id').where('email', '=', ccAttempt).executeTakeFirst();
    expect(cc).toBeUndefined();
  });
});
