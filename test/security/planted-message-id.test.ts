import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uniqueEmail } from '../portal/support.js';
import { openTicket, settle, startRig, submit, submitRaw, toAddress, SUPPORT, TRUSTED_CUSTOMERS, type Rig } from './support/rig.js';

/**
 * Finding 5 of issue #12: a Message-ID written `<<id>>` got dedupe key
 * `mid:<id>` but was stored (and looked up) as `id`, and the lookup took the
 * newest match. So an attacker who knew the id of a victim's mail planted a
 * copy in a ticket of his own, and the victim's next reply, which names that
 * id in In-Reply-To, was filed into the attacker's ticket and mailed to him.
 * One normaliser now serves dedupe, storage and lookup, the oldest match
 * wins, and stored-id evidence must be tied to the sender.
 */
let rig: Rig;
beforeAll(async () => {
  rig = await startRig({}, { zone: TRUSTED_CUSTOMERS });
});
afterAll(() => rig?.teardown());

const carries = (s: string) => (m: { raw: Buffer }) => m.raw.toString('latin1').replace(/=\r\n/g, '').includes(s);

describe('a planted Message-ID', () => {
  it("cannot pull the victim's reply into the attacker's ticket", async () => {
    const carol = await openTicket(rig);
    const bare = carol.messageId.slice(1, -1);
    const mallory = uniqueEmail('mallory');
    const variants = [`<<${bare}>>`, `< ${bare.toUpperCase()} >`, `<<<${bare}>>>`];
    const planted = [];
    for (const id of variants) {
      const raw = [
        `From: Mallory <${mallory}>`,
        `To: ${SUPPORT}`,
        `Subject: totally unrelated ${randomBytes(2).toString('hex')}`,
        `Message-ID: ${id}`,
        'Date: Wed, 02 Dec 2026 10:00:00 +0000',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=utf-8',
        '',
        'hello',
        '',
      ].join('\r\n');
      planted.push(await submitRaw(rig, raw, { from: mallory, to: [SUPPORT] }));
    }
    // The same id, however it is bracketed or cased, is the same message: a duplicate, never a ticket of Mallory's.
    expect(planted.map((r) => r.reason)).toEqual(['duplicate', 'duplicate', 'duplicate']);
    const malloryTickets = await rig.db
      .selectFrom('tickets as t')
      .innerJoin('users as u', 'u.id', 't.requester_id')
      .select('t.id')
      .where('u.email', '=', mallory.toLowerCase())
      .execute();
    expect(malloryTickets).toHaveLength(0);

    const s = `SECRET${randomBytes(4).toString('hex')}`;
    const reply = await submit(rig, {
      from: carol.email,
      to: SUPPORT,
      subject: `Re: ${carol.subject}`,
      text: `My account number is ${s}`,
      inReplyTo: carol.messageId,
      references: [carol.messageId],
    });
    expect(reply).toMatchObject({ status: 'processed', ticket_id: carol.ticketId });
    await settle([rig]);
    const leaked = rig.sink.received.filter((m) => toAddress(mallory)(m) && carries(s)(m));
    console.log(
      `planted ids: ${planted.map((r) => r.reason).join(', ')}; victim's reply filed in ticket ${reply.ticket_id} (hers: ${carol.ticketId}); mails to the attacker with her text: ${leaked.length}`,
    );
    expect(leaked).toHaveLength(0);
  });
});
