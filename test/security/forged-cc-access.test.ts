import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { header } from '../outbound/support/relay-sink.js';
import { customerAddress, customerWorld } from './support/customers.js';
import { makeUser, openTicket, replyAddressOf, settle, startRig, submit, toAddress, SUPPORT, type Rig } from './support/rig.js';
import { staffAddress, staffWorld } from './support/staff.js';

/**
 * Finding 1 of issue #12: a CC removed with `#cc remove` (or an outsider
 * holding a forwarded acknowledgement) used to get back onto a ticket by
 * mailing `From: <requester>` with `Cc: himself` to his old reply address:
 * nothing authenticated the From, the reply token's user was never compared
 * with the sender, and the body tag is per ticket. Now adding people needs a
 * From that SPF/DKIM/DMARC vouch for, and someone else's reply address is no
 * evidence for this sender. The control is the genuine, DKIM-signed requester,
 * who may still add a CC.
 */
const staff = staffWorld();
const customers = customerWorld();
let rig: Rig;
let alice: string;

beforeAll(async () => {
  rig = await startRig({}, { zone: { ...staff.zone, ...customers.zone } });
  alice = (await makeUser(rig.db, { role: 'staff', name: 'Alice Agent', email: staffAddress('alice') })).email;
});
afterAll(() => rig?.teardown());

const secret = () => `SECRET${randomBytes(4).toString('hex')}`;
const carries = (s: string) => (m: { raw: Buffer }) => m.raw.toString('latin1').replace(/=\r\n/g, '').includes(s);
const ccs = async (ticketId: number) =>
  (
    await rig.db
      .selectFrom('ticket_participants as p')
      .innerJoin('users as u', 'u.id', 'p.user_id')
      .select('u.email')
      .where('p.ticket_id', '=', ticketId)
      .where('p.role', '=', 'cc')
      .execute()
  ).map((r) => r.email);

/** Alice answers publicly by mail, DKIM-signed: what every participant should (or should not) receive. */
async function staffPost(ticketId: number, replyTo: string, text: string) {
  const row = await submit(
    rig,
    { from: { name: 'Alice Agent', address: alice }, to: replyTo, subject: 'Re: update', text, dkim: staff.staffDkim },
    { to: [replyTo] },
  );
  expect(row).toMatchObject({ status: 'processed', ticket_id: ticketId });
}

describe('a removed CC or an outsider cannot put himself back on a ticket with a forged From', () => {
  it('removed CC: held, stays off the ticket and receives nothing posted after his removal', async () => {
    const carol = customerAddress('carol');
    const mallory = `mallory-${randomBytes(3).toString('hex')}@evil.test`;
    // Control: the genuine requester (DKIM-signed by shop.test) may add a CC.
    const t = await openTicket(rig, { email: carol, cc: [mallory], staff: [alice], dkim: customers.dkim });
    expect(t.inbound.auth).toMatchObject({ ok: true });
    expect(await ccs(t.ticketId)).toEqual([mallory]);
    const staffReplyTo = await replyAddressOf(t.notifications[alice]!);
    await staffPost(t.ticketId, staffReplyTo, 'We are looking into it.');
    const [malloryMail] = await rig.sink.waitFor((m) => toAddress(mallory)(m) && carries('We are looking into it')(m));
    const malloryReplyTo = await replyAddressOf(malloryMail!);

    await staffPost(t.ticketId, staffReplyTo, `#cc remove ${mallory}`);
    expect(await ccs(t.ticketId)).toEqual([]);

    // The attack: From Carol (forged), to Mallory's old reply address, Cc Mallory, quoting the body tag.
    const quoted = malloryMail!.raw.toString('latin1').match(/\[RL-\d+-[a-z2-7]{16}\]/i)?.[0] ?? '';
    expect(quoted).not.toBe('');
    const attack = await submit(
      rig,
      {
        from: { name: 'Carol', address: carol },
        to: malloryReplyTo,
        cc: mallory,
        subject: `Re: ${t.subject}`,
        text: `Please keep my colleague in the loop.\n\n> ${quoted}`,
        inReplyTo: header(malloryMail!, 'Message-ID'),
      },
      { from: mallory, to: [malloryReplyTo] },
    );
    expect(attack.status).toBe('held');
    expect(['sender_unverified', 'unbound_evidence']).toContain(attack.reason);
    expect(attack.auth).toMatchObject({ ok: false });

    const s = secret();
    await staffPost(t.ticketId, staffReplyTo, `The new door code is ${s}.`);
    await rig.sink.waitFor((m) => toAddress(carol)(m) && carries(s)(m));
    await settle([rig]);
    expect(await ccs(t.ticketId)).toEqual([]);
    const leaked = rig.sink.received.filter((m) => toAddress(mallory)(m) && carries(s)(m));
    console.log(`removed CC: attack held as ${attack.reason}; mails to the removed CC carrying the later post: ${leaked.length}`);
    expect(leaked).toHaveLength(0);
  });

  it('outsider with only the body tag of a forwarded acknowledgement: held, never becomes a CC', async () => {
    const carol = customerAddress('carol');
    const oscar = `oscar-${randomBytes(3).toString('hex')}@evil.test`;
    const t = await openTicket(rig, { email: carol, staff: [alice], dkim: customers.dkim });
    const tag = t.ack!.raw.toString('latin1').match(/\[RL-\d+-[a-z2-7]{16}\]/i)![0];
    const attack = await submit(
      rig,
      { from: { name: 'Carol', address: carol }, to: SUPPORT, cc: oscar, subject: `Re: ${t.subject}`, text: `Adding Oscar.\n\n> ${tag}` },
      { from: oscar },
    );
    expect(attack).toMatchObject({ status: 'held', reason: 'sender_unverified', ticket_id: t.ticketId });
    const s = secret();
    await staffPost(t.ticketId, await replyAddressOf(t.notifications[alice]!), `Your case number is ${s}.`);
    await rig.sink.waitFor((m) => toAddress(carol)(m) && carries(s)(m));
    await settle([rig]);
    expect(await ccs(t.ticketId)).toEqual([]);
    expect(rig.sink.received.filter(toAddress(oscar))).toHaveLength(0);
    expect(await rig.db.selectFrom('users').select('id').where('email', '=', oscar).executeTakeFirst()).toBeUndefined();
  });

  it("the requester's unauthenticated reply still adds its text (Zendesk parity) but not the people it names", async () => {
    const carol = customerAddress('carol');
    const t = await openTicket(rig, { email: carol, dkim: customers.dkim });
    const replyTo = await replyAddressOf(t.ack!);
    const s = secret();
    const plain = await submit(rig, { from: carol, to: replyTo, subject: `Re: ${t.subject}`, text: `Any news? ${s}` }, { to: [replyTo] });
    expect(plain).toMatchObject({ status: 'processed', ticket_id: t.ticketId });
    const stored = await rig.db
      .selectFrom('messages')
      .select('body_text')
      .where('ticket_id', '=', t.ticketId)
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    expect(stored.body_text).toContain(s);
  });
});
