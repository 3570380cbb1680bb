import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import type { Zone } from '../../outbound/support/dns-server.js';
import { makeDkimKey } from '../../outbound/support/staff-mail.js';
import { Client } from '../../portal/support.js';
import { ofTicket, PASSWORD, setPassword, settle, ticketState, toAddress, type Rig } from './rig.js';

/**
 * The staff side of the mail world: staff mail comes from corp.test, whose
 * DNS (served by the test's own DNS server) says SPF only 192.0.2.10 — never
 * 127.0.0.1, where every test message really comes from — DKIM key k1 and
 * DMARC p=reject. So a message from a corp.test address passes only with a
 * genuine corp.test DKIM signature. evil.test is the attacker's own domain:
 * its SPF allows 127.0.0.1 and it has a DKIM key of its own.
 */
export const STAFF_DOMAIN = 'corp.test';

export function staffWorld() {
  const staffKey = makeDkimKey();
  const evilKey = makeDkimKey();
  const zone: Zone = {
    'corp.test': { TXT: ['v=spf1 ip4:192.0.2.10 -all'] },
    'k1._domainkey.corp.test': { TXT: [staffKey.txt] },
    '_dmarc.corp.test': { TXT: ['v=DMARC1; p=reject; adkim=r; aspf=r'] },
    'evil.test': { TXT: ['v=spf1 ip4:127.0.0.1 -all'] },
    'k1._domainkey.evil.test': { TXT: [evilKey.txt] },
  };
  return {
    zone,
    /** A genuine signature of the staff domain (what the staff member's own mail server adds). */
    staffDkim: { domainName: 'corp.test', keySelector: 'k1', privateKey: staffKey.privateKey },
    evilDkim: { domainName: 'evil.test', keySelector: 'k1', privateKey: evilKey.privateKey },
  };
}

export const staffAddress = (name = 'alice') => `${name}-${randomBytes(3).toString('hex')}@${STAFF_DOMAIN}`;

export type TicketSnapshot = Awaited<ReturnType<typeof ticketState>>;

/**
 * The attack achieved nothing: once everything settled, the ticket (status,
 * messages, participants, outbox) is exactly as before, the customer got no
 * mail beyond `mailsBefore`, no mail of the ticket carries `secret`, and the
 * portal shows the customer none of it.
 */
export async function expectUntouched(
  rig: Rig,
  t: { ticketId: number; email: string },
  before: TicketSnapshot,
  mailsBefore: number,
  secret: string,
) {
  await settle([rig]);
  expect(await ticketState(rig.db, t.ticketId)).toEqual(before);
  expect(rig.sink.received.filter(toAddress(t.email))).toHaveLength(mailsBefore);
  // Nothing about this ticket, and nothing to its customer, carries the attacker's text.
  // (Quoted-printable may wrap a line inside the secret: undo soft breaks before looking.)
  const related = rig.sink.received.filter((m) => toAddress(t.email)(m) || ofTicket(t.ticketId)(m));
  expect(related.some((m) => m.raw.toString('latin1').replace(/=\r\n/g, '').includes(secret))).toBe(false);
  await setPassword(rig.db, t.email, PASSWORD);
  const client = new Client(rig.base);
  expect((await client.login(t.email, PASSWORD)).status).toBe(303);
  const page = await client.get(`/requests/${t.ticketId}`);
  expect(page.status).toBe(200);
  expect(page.html).not.toContain(secret);
}
