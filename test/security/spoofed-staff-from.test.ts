import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { header } from '../outbound/support/relay-sink.js';
import {
  makeUser,
  openTicket,
  replyAddressOf,
  startRig,
  submit,
  submitRaw,
  ticketState,
  toAddress,
  SUPPORT,
  type Rig,
} from './support/rig.js';
import { expectUntouched, staffAddress, staffWorld } from './support/staff.js';

/**
 * Spoofed staff From: anyone can write `From: <staff address>`. Staff mail
 * changes status, adds CCs and reaches customers, so without sender
 * authentication it must be held as auth_failed with nothing public, no
 * status change and no customer mail. The genuine, DKIM-signed staff reply
 * is the control: the same path does work for the real sender.
 */
const world = staffWorld();
let rig: Rig;
let alice: string;

beforeAll(async () => {
  rig = await startRig({ STAFF_AUTH: 'dmarc' }, { zone: world.zone });
  alice = (await makeUser(rig.db, { role: 'staff', name: 'Alice Agent', email: staffAddress('alice') })).email;
});
afterAll(() => rig?.teardown());

async function victimTicket() {
  const t = await openTicket(rig, { staff: [alice] });
  const notification = t.notifications[alice]!;
  return { ...t, notification, replyTo: await replyAddressOf(notification), before: await ticketState(rig.db, t.ticketId) };
}

const secret = () => `SPOOF${randomBytes(4).toString('hex')}`;
const commands = (s: string) =>
  `#status solved\n#cc add attacker-${s.toLowerCase()}@evil.test\n\nRefund approved ${s}: wire the fee to our new account.`;

describe('spoofed staff From', () => {
  it('control: the genuine staff member, DKIM-signed by the staff domain, is processed and reaches the customer', async () => {
    const t = await victimTicket();
    const s = secret();
    const row = await submit(
      rig,
      {
        from: { name: 'Alice Agent', address: alice },
        to: t.replyTo,
        subject: `Re: ${t.subject}`,
        text: `${s} We are on it.`,
        dkim: world.staffDkim,
      },
      { to: [t.replyTo] },
    );
    expect(row).toMatchObject({ status: 'processed', ticket_id: t.ticketId });
    expect(row.auth).toMatchObject({ ok: true });
    await rig.sink.waitFor((m) => toAddress(t.email)(m) && m.raw.toString('latin1').replace(/=\r\n/g, '').includes(s));
  });

  it("unsigned, from a host the staff domain's SPF refuses, to the staff member's own reply address: held auth_failed, nothing changes", async () => {
    const t = await victimTicket();
    const s = secret();
    const mailsBefore = rig.sink.received.filter(toAddress(t.email)).length;
    const row = await submit(
      rig,
      {
        from: { name: 'Alice Agent', address: alice },
        to: t.replyTo,
        subject: `Re: ${t.subject}`,
        text: commands(s),
        inReplyTo: header(t.notification, 'Message-ID'),
        references: [header(t.notification, 'Message-ID')!],
      },
      { from: alice, to: [t.replyTo] },
    );
    expect(row).toMatchObject({ status: 'held', reason: 'auth_failed', ticket_id: t.ticketId });
    expect(row.auth).toMatchObject({ ok: false });
    await expectUntouched(rig, t, t.before, mailsBefore, s);
  });

  it("unsigned, to support@ and threaded only by the In-Reply-To of the customer's own acknowledgement: held auth_failed, nothing changes", async () => {
    const t = await victimTicket();
    const s = secret();
    const mailsBefore = rig.sink.received.filter(toAddress(t.email)).length;
    const ackId = header(t.ack!, 'Message-ID')!;
    const row = await submit(rig, {
      from: { name: 'Alice Agent', address: alice },
      to: SUPPORT,
      subject: `Re: ${t.subject}`,
      text: commands(s),
      inReplyTo: ackId,
      references: [t.messageId, ackId],
    });
    expect(row).toMatchObject({ status: 'held', reason: 'auth_failed', ticket_id: t.ticketId });
    await expectUntouched(rig, t, t.before, mailsBefore, s);
  });

  it("signed by the attacker's own domain with SPF passing for the attacker's envelope: still held auth_failed", async () => {
    const t = await victimTicket();
    const s = secret();
    const mailsBefore = rig.sink.received.filter(toAddress(t.email)).length;
    const row = await submit(
      rig,
      {
        from: { name: 'Alice Agent', address: alice },
        to: t.replyTo,
        subject: `Re: ${t.subject}`,
        text: commands(s),
        dkim: world.evilDkim,
      },
      { from: 'bounces@evil.test', to: [t.replyTo] },
    );
    expect(row).toMatchObject({ status: 'held', reason: 'auth_failed' });
    expect(row.auth).toMatchObject({ ok: false });
    await expectUntouched(rig, t, t.before, mailsBefore, s);
  });

  it('the staff address only in the display name ("alice@corp.test" <attacker@evil.test>) is not staff: held not_participant', async () => {
    const t = await victimTicket();
    const s = secret();
    const mailsBefore = rig.sink.received.filter(toAddress(t.email)).length;
    const row = await submit(
      rig,
      {
        from: { name: alice, address: 'attacker@evil.test' },
        to: t.replyTo,
        subject: `Re: ${t.subject}`,
        text: commands(s),
        dkim: world.evilDkim,
      },
      { to: [t.replyTo] },
    );
    expect(row).toMatchObject({ status: 'held', reason: 'not_participant' });
    await expectUntouched(rig, t, t.before, mailsBefore, s);
  });

  it("a From header listing the staff address next to the attacker's is not staff either", async () => {
    const t = await victimTicket();
    const s = secret();
    const mailsBefore = rig.sink.received.filter(toAddress(t.email)).length;
    const raw = [
      `From: Alice Agent <${alice}>, Mallory <attacker@evil.test>`,
      `Sender: attacker@evil.test`,
      `To: ${t.replyTo}`,
      `Subject: Re: ${t.subject}`,
      `Message-ID: <two-from.${s}@evil.test>`,
      'Content-Type: text/plain; charset=utf-8',
      '',
      commands(s),
      '',
    ].join('\r\n');
    const row = await submitRaw(rig, raw, { from: 'attacker@evil.test', to: [t.replyTo] });
    expect(row.status).toBe('held');
    expect(['auth_failed', 'not_participant', 'invalid_sender']).toContain(row.reason);
    await expectUntouched(rig, t, t.before, mailsBefore, s);
  });
});
