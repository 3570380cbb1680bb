import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, uniqueEmail } from '../portal/support.js';
import { makeUser, openTicket, PASSWORD, setPassword, startRig, type Rig } from './support/rig.js';

/**
 * Finding 8 of issue #12: "Add a CC" on the portal answered with the CC
 * list, which showed `Name <addr>` for an address that already had an
 * account, the bare address for a new one, and only a name for a staff
 * account: a signed-in customer could enumerate accounts, read their names,
 * and find out which addresses belong to staff. The list now shows what the
 * adder typed, and staff addresses are refused with the same answer as our
 * own support address.
 */
let rig: Rig;
beforeAll(async () => {
  rig = await startRig();
});
afterAll(() => rig?.teardown());

const ccList = (html: string) => /class="ccs"[\s\S]*?<\/(ul|p|div)>/.exec(html)?.[0] ?? html;

describe('"Add a CC" as an oracle', () => {
  it('an existing account, a new address and a staff address all look alike: no names, no accounts revealed, staff refused', async () => {
    const t = await openTicket(rig);
    await setPassword(rig.db, t.email, PASSWORD);
    const mallory = new Client(rig.base);
    expect((await mallory.login(t.email, PASSWORD)).status).toBe(303);
    await mallory.get(`/requests/${t.ticketId}`);

    const known = await makeUser(rig.db, { email: uniqueEmail('known'), name: 'Katherine Known' });
    const staff = await makeUser(rig.db, { role: 'staff', email: uniqueEmail('agent'), name: 'Sam Secret-Agent' });
    const fresh = uniqueEmail('fresh');

    expect((await mallory.post(`/requests/${t.ticketId}/ccs`, { email: known.email })).status).toBe(303);
    expect((await mallory.post(`/requests/${t.ticketId}/ccs`, { email: fresh })).status).toBe(303);
    const staffTry = await mallory.post(`/requests/${t.ticketId}/ccs`, { email: staff.email });
    const ownTry = await mallory.post(`/requests/${t.ticketId}/ccs`, { email: 'support@help.test' });
    expect(staffTry.status).toBe(422);
    // Same answer as for our own address: nothing says "this is staff".
    expect(ccList(staffTry.html).replaceAll(staff.email, 'X')).toBe(ccList(ownTry.html).replaceAll('support@help.test', 'X'));

    const page = (await mallory.get(`/requests/${t.ticketId}`)).html;
    const shown = {
      knownName: page.includes('Katherine Known'),
      staffName: page.includes('Sam Secret-Agent'),
      knownAddress: page.includes(known.email),
      freshAddress: page.includes(fresh),
    };
    console.log(`CC list after adding: ${JSON.stringify(shown)}`);
    expect(shown).toEqual({ knownName: false, staffName: false, knownAddress: true, freshAddress: true });
    const staffOnTicket = await rig.db
      .selectFrom('ticket_participants')
      .select('user_id')
      .where('ticket_id', '=', t.ticketId)
      .where('user_id', '=', staff.id)
      .executeTakeFirst();
    expect(staffOnTicket).toBeUndefined();
  });
});
