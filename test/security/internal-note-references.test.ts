import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { header } from '../outbound/support/relay-sink.js';
import { makeUser, openTicket, replyAddressOf, startRig, submit, toAddress, type Rig } from './support/rig.js';
import { staffAddress, staffWorld } from './support/staff.js';

/**
 * Finding 10 of issue #12: the References header of customer mail listed
 * every stored Message-ID of the ticket, internal notes included, so the
 * customer learnt that notes exist and the host name of the agent's laptop
 * that wrote them. Customer-facing mail now threads on public messages only;
 * staff mail still sees everything.
 */
const world = staffWorld();
let rig: Rig;
let alice: string;
beforeAll(async () => {
  // Unassigned, so the colleague is notified of the customer's answer too (ownership is tested elsewhere).
  rig = await startRig({ AUTO_ASSIGN_FIRST_REPLIER: 'false' }, { zone: world.zone });
  alice = (await makeUser(rig.db, { role: 'staff', name: 'Alice Agent', email: staffAddress('alice') })).email;
});
afterAll(() => rig?.teardown());

describe('internal notes in threading headers', () => {
  it("the customer's mail never names an internal note's Message-ID; a colleague's does", async () => {
    const bob = (await makeUser(rig.db, { role: 'staff', name: 'Bob Agent', email: staffAddress('bob') })).email;
    const t = await openTicket(rig, { staff: [alice, bob] });
    const staffReplyTo = await replyAddressOf(t.notifications[alice]!);
    const noteId = `note.${randomBytes(4).toString('hex')}@alices-macbook-pro.corp.test`;
    const note = await submit(
      rig,
      {
        from: alice,
        to: staffReplyTo,
        subject: 'Re: x',
        text: '#note\nCustomer is on the legacy plan, do not refund.',
        messageId: `<${noteId}>`,
        dkim: world.staffDkim,
      },
      { to: [staffReplyTo] },
    );
    expect(note.status).toBe('processed');
    const publicReply = await submit(
      rig,
      { from: alice, to: staffReplyTo, subject: 'Re: x', text: 'We are on it.', dkim: world.staffDkim },
      { to: [staffReplyTo] },
    );
    expect(publicReply.status).toBe('processed');

    const [toCustomer] = await rig.sink.waitFor((m) => toAddress(t.email)(m) && m.raw.toString('latin1').includes('We are on it'));
    // The customer answers; the staff notification of that answer may thread on the note.
    const customerReplyTo = await replyAddressOf(toCustomer!);
    await submit(rig, { from: t.email, to: customerReplyTo, subject: 'Re: x', text: 'Thanks, waiting.' }, { to: [customerReplyTo] });
    const [toBob] = await rig.sink.waitFor((m) => toAddress(bob)(m) && m.raw.toString('latin1').includes('Thanks, waiting'));
    const refs = (m: typeof toCustomer) => `${header(m!, 'References') ?? ''} ${header(m!, 'In-Reply-To') ?? ''}`.toLowerCase();
    console.log(`customer References: ${refs(toCustomer)}`);
    expect(refs(toCustomer)).not.toContain(noteId);
    expect(refs(toCustomer)).not.toContain('macbook');
    expect(refs(toBob)).toContain(noteId);
  });
});
