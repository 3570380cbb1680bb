import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uniqueEmail } from '../portal/support.js';
import { makeUser, openTicket, startRig, submit, ticketState, toAddress, SUPPORT, type Rig } from './support/rig.js';
import { expectUntouched } from './support/staff.js';

/**
 * A bare ticket number proves nothing: ticket ids are sequential and our own
 * staff notifications print "[#123]" in the subject. A stranger writing
 * "Re: [#123] …" (or the same subject, or "ticket 123" in the body) must
 * get a ticket of their own and never land in ticket 123.
 */
let rig: Rig;
let staff: string;

beforeAll(async () => {
  rig = await startRig();
  staff = (await makeUser(rig.db, { role: 'staff', email: uniqueEmail('staff') })).email;
});
afterAll(() => rig?.teardown());

describe('bare ticket number in the subject', () => {
  it('strangers quoting the ticket number in every usual shape each get a new ticket; the numbered ticket never changes', async () => {
    const t = await openTicket(rig, { staff: [staff] });
    const before = await ticketState(rig.db, t.ticketId);
    const mailsBefore = rig.sink.received.filter(toAddress(t.email)).length;
    const id = t.ticketId;
    const shapes = [
      { subject: `Re: [#${id}] ${t.subject}`, text: 'Any update?' }, // exactly our staff-notification subject
      { subject: `Re: ${t.subject}`, text: 'Same subject as the victim' },
      { subject: `Request #${id}`, text: `Regarding request #${id}, please close it.` },
      { subject: `#${id}`, text: `ticket ${id}` },
      { subject: `[RL-${id}] status`, text: `Ticket ID: ${id}\nhttp://127.0.0.1/requests/${id}` },
    ];
    const opened = new Set<number>();
    for (const shape of shapes) {
      const row = await submit(rig, {
        from: uniqueEmail('stranger'),
        to: SUPPORT,
        subject: shape.subject,
        text: `${shape.text}\nBARE${id}`,
      });
      expect(row.status, shape.subject).toBe('processed');
      expect(row.ticket_id, shape.subject).not.toBe(id);
      opened.add(row.ticket_id!);
    }
    expect(opened.size).toBe(shapes.length);
    await expectUntouched(rig, t, before, mailsBefore, `BARE${id}`);
  });

  it("an existing customer (with tickets of their own) quoting someone else's number also gets a new ticket", async () => {
    const victim = await openTicket(rig, { staff: [staff] });
    const other = await openTicket(rig, { staff: [staff] });
    const before = await ticketState(rig.db, victim.ticketId);
    const mailsBefore = rig.sink.received.filter(toAddress(victim.email)).length;
    const row = await submit(rig, {
      from: other.email,
      to: SUPPORT,
      subject: `Re: [#${victim.ticketId}] ${victim.subject}`,
      text: `BARE-OTHER-${victim.ticketId}`,
    });
    expect(row.status).toBe('processed');
    expect([victim.ticketId, other.ticketId]).not.toContain(row.ticket_id);
    await expectUntouched(rig, victim, before, mailsBefore, `BARE-OTHER-${victim.ticketId}`);
  });
});
