import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeUser, openTicket, replyAddressOf, startRig, submit, ticketState, toAddress, type Rig } from './support/rig.js';
import { expectUntouched, staffAddress, staffWorld } from './support/staff.js';

/**
 * Injected Authentication-Results: a sender can write any header, including
 * the ones a receiving MTA adds to record SPF/DKIM/DMARC verdicts. replyline
 * must compute the verdict itself from the envelope, the connecting IP and
 * the signatures, and treat every such header in the message as text.
 */
const world = staffWorld();
let rig: Rig;
let alice: string;

beforeAll(async () => {
  rig = await startRig({ STAFF_AUTH: 'dmarc' }, { zone: world.zone });
  alice = (await makeUser(rig.db, { role: 'staff', name: 'Alice Agent', email: staffAddress('alice') })).email;
});
afterAll(() => rig?.teardown());

/** Every header an MTA (or ARC intermediary) might have added to vouch for the message, all claiming pass. */
function forgedVerdicts(from: string): Record<string, string> {
  const d = from.split('@')[1];
  return {
    'Authentication-Results': `help.test; dkim=pass header.d=${d} header.s=k1 header.b=abcdefgh; spf=pass smtp.mailfrom=${from}; dmarc=pass (p=reject) header.from=${d}`,
    'ARC-Authentication-Results': `i=1; mx.google.com; dkim=pass header.i=@${d}; spf=pass smtp.mailfrom=${from}; dmarc=pass header.from=${d}`,
    'ARC-Seal': 'i=1; a=rsa-sha256; t=1700000000; cv=none; d=google.com; s=arc-20160816; b=AAAA',
    'ARC-Message-Signature': 'i=1; a=rsa-sha256; c=relaxed/relaxed; d=google.com; s=arc-20160816; h=from:to:subject; bh=AAAA; b=AAAA',
    'Received-SPF': `pass (help.test: domain of ${from} designates 192.0.2.10 as permitted sender) client-ip=192.0.2.10;`,
    'X-Original-Authentication-Results': `help.test; dkim=pass; spf=pass; dmarc=pass`,
    Received: `from mail.${d} (mail.${d} [192.0.2.10]) by mx.help.test with ESMTPS id 1; Mon, 1 Jan 2024 00:00:00 +0000`,
  };
}

async function staffReply(opts: { forged: boolean; signed: boolean }) {
  const t = await openTicket(rig, { staff: [alice] });
  const replyTo = await replyAddressOf(t.notifications[alice]!);
  const before = await ticketState(rig.db, t.ticketId);
  const mailsBefore = rig.sink.received.filter(toAddress(t.email)).length;
  const s = `INJECT${randomBytes(4).toString('hex')}`;
  const row = await submit(
    rig,
    {
      from: { name: 'Alice Agent', address: alice },
      to: replyTo,
      subject: `Re: ${t.subject}`,
      text: `#status solved\n\nYour refund of 5,000 EUR is approved ${s}.`,
      headers: opts.forged ? forgedVerdicts(alice) : {},
      ...(opts.signed ? { dkim: world.staffDkim } : {}),
    },
    { to: [replyTo] },
  );
  return { t, row, before, mailsBefore, s };
}

describe('injected Authentication-Results and friends', () => {
  it('control: the same forged headers on a genuinely DKIM-signed staff reply do not stop it (processed, ok)', async () => {
    const { t, row } = await staffReply({ forged: true, signed: true });
    expect(row).toMatchObject({ status: 'processed', ticket_id: t.ticketId });
    expect(row.auth).toMatchObject({ ok: true });
    expect((await ticketState(rig.db, t.ticketId)).ticket.status).toBe('solved');
  });

  it('an unsigned staff reply claiming dkim=pass, spf=pass, dmarc=pass in its own headers is held auth_failed and changes nothing', async () => {
    const { t, row, before, mailsBefore, s } = await staffReply({ forged: true, signed: false });
    expect(row).toMatchObject({ status: 'held', reason: 'auth_failed', ticket_id: t.ticketId });
    await expectUntouched(rig, t, before, mailsBefore, s);
  });

  it('the recorded verdict is our own: SPF checked against the real client IP (fail), no DKIM result, DMARC fail', async () => {
    const { row } = await staffReply({ forged: true, signed: false });
    const auth = row.auth as {
      ok: boolean;
      details?: { spf?: { result: string } | null; dkim?: unknown[]; dmarc?: { result: string } | null };
    };
    expect(auth.ok).toBe(false);
    expect(auth.details?.spf?.result).toBe('fail');
    expect(auth.details?.dkim ?? []).toEqual([]);
    expect(auth.details?.dmarc?.result).toBe('fail');
    // Nothing in what we stored echoes the forged "pass" claims.
    expect(JSON.stringify(row.auth)).not.toMatch(/192\.0\.2\.10|arc-20160816/);
  });
});
