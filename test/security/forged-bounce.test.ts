import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBounceAddress } from '../../src/mail/tokens.js';
import { parse, type ReceivedMail } from '../outbound/support/relay-sink.js';
import { Client } from '../portal/support.js';
import { makeUser, ofTicket, openTicket, settle, startRig, submitRaw, toAddress, SUPPORT, type Rig } from './support/rig.js';

/**
 * Finding 4 of issue #12: a DSN was matched by its Final-Recipient alone and
 * marked the newest `sent` or `queued` mail to that address failed. A victim
 * whose set-password link was stuck in a relay outage never got it: anyone
 * could cancel it with a forged "550 user unknown". A bounce now counts only
 * with the signed Message-ID of the very mail it concerns, or when it comes
 * back to that mail's signed return path (VERP, our envelope MAIL FROM), and
 * only for a mail already sent; queued mail is never touched.
 */
let rig: Rig;
beforeAll(async () => {
  rig = await startRig({ OUTBOUND_RETRY_BASE_MS: '300' });
});
afterAll(() => rig?.teardown());

function forgedDsn(victim: string, messageId: string | null, to = SUPPORT) {
  const b = `b-${randomBytes(4).toString('hex')}`;
  return [
    'From: Mail Delivery System <MAILER-DAEMON@mx.evil.test>',
    `To: ${to}`,
    'Subject: Undelivered Mail Returned to Sender',
    `Message-ID: <dsn.${randomBytes(4).toString('hex')}@mx.evil.test>`,
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${b}"`,
    'MIME-Version: 1.0',
    '',
    `--${b}`,
    'Content-Type: text/plain',
    '',
    'Your message could not be delivered.',
    `--${b}`,
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; mx.evil.test',
    '',
    `Final-Recipient: rfc822; ${victim}`,
    'Action: failed',
    'Status: 5.1.1',
    `Diagnostic-Code: smtp; 550 5.1.1 <${victim}>: User unknown`,
    '',
    // Some MTAs return no headers at all: then only the return path says which mail it was.
    ...(messageId
      ? [`--${b}`, 'Content-Type: text/rfc822-headers', '', `From: ${SUPPORT}`, `To: ${victim}`, `Message-ID: <${messageId}>`, '']
      : []),
    `--${b}--`,
    '',
  ].join('\r\n');
}

const outboxTo = (email: string) =>
  rig.db
    .selectFrom('outbound_mails')
    .select(['id', 'status', 'kind', 'attempts', 'message_id'])
    .where('recipient', '=', email.toLowerCase())
    .orderBy('id')
    .execute();

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('forged bounces', () => {
  it('cannot cancel a queued set-password link during a relay outage; the victim gets it once the relay is back', async () => {
    const victim = await makeUser(rig.db);
    rig.sink.mode = { type: 'reject', code: 451, message: '4.3.0 try again later' };
    const client = new Client(rig.base);
    await client.get('/password/new');
    expect((await client.post('/password/new', { email: victim.email })).status).toBe(200);
    const queued = await until('a failed delivery attempt', async () =>
      (await outboxTo(victim.email)).find((r) => r.kind === 'password_setup' && r.attempts > 0 && r.status === 'queued'),
    );

    // The attacker names the victim, with a made-up id and with an id of our domain he cannot sign.
    const guessed = `rl.0.${'a'.repeat(16)}.${'b'.repeat(16)}@help.test`;
    for (const id of [`x.${randomBytes(4).toString('hex')}@help.test`, guessed]) {
      const row = await submitRaw(rig, forgedDsn(victim.email, id), { from: '', to: [SUPPORT] });
      expect(row).toMatchObject({ status: 'held', reason: 'bounce' });
      expect(row.error).toContain('no outbound mail of ours matched');
    }
    expect((await outboxTo(victim.email)).find((r) => r.id === queued.id)!.status).toBe('queued');
    // Even a DSN to the queued mail's own signed return path (a bounce racing our commit) leaves it queued.
    const verp = makeBounceAddress(rig.app.ctx.config.SECRET_KEY, 'help.test', queued.id);
    const early = await submitRaw(rig, forgedDsn(victim.email, queued.message_id, verp), { from: '', to: [verp] });
    expect(early).toMatchObject({ status: 'held', reason: 'bounce' });
    expect((await outboxTo(victim.email)).find((r) => r.id === queued.id)!.status).toBe('queued');

    rig.sink.mode = { type: 'accept' };
    const [mail] = await rig.sink.waitFor(toAddress(victim.email), 1, 30_000);
    const link = /\/password\/set\?token=[A-Za-z0-9_-]+/.exec((await parse(mail!)).text ?? '')?.[0];
    expect(link).toBeTruthy();
    const after = await outboxTo(victim.email);
    console.log(
      `forged DSNs: 2 held; victim's link row ${queued.id}: ${after.find((r) => r.id === queued.id)!.status} after ${after.find((r) => r.id === queued.id)!.attempts} attempts`,
    );
    expect(after.find((r) => r.id === queued.id)!.status).toBe('sent');
    const form = await new Client(rig.base).get(link!);
    expect(form.status).toBe(200);
  });

  it('cannot mark a sent mail failed by naming its recipient; the genuine DSN with our signed id still does', async () => {
    const t = await openTicket(rig);
    await settle([rig]);
    const ack = (await outboxTo(t.email)).find((r) => r.kind !== 'password_setup' && r.status === 'sent')!;
    expect(ack).toBeTruthy();
    const forged = await submitRaw(rig, forgedDsn(t.email, `made.up.${randomBytes(3).toString('hex')}@customer.test`), {
      from: '',
      to: [SUPPORT],
    });
    expect(forged.reason).toBe('bounce');
    expect((await outboxTo(t.email)).find((r) => r.id === ack.id)!.status).toBe('sent');
    // Control: the recipient's real mail server returns the headers of our mail, signed id included.
    const genuine = await submitRaw(rig, forgedDsn(t.email, ack.message_id), { from: '', to: [SUPPORT] });
    expect(genuine.error).toContain(`outbound mail ${ack.id} marked failed`);
    expect((await outboxTo(t.email)).find((r) => r.id === ack.id)!.status).toBe('failed');
  });

  it('a bounce to the signed return path marks exactly that mail failed; a forged return path is refused at RCPT', async () => {
    const t = await openTicket(rig);
    await settle([rig]);
    const sent = async () => (await outboxTo(t.email)).filter((r) => r.status === 'sent');
    // A second mail to the same customer, which the bounce must leave alone.
    const second = await openTicket(rig, { email: t.email });
    await settle([rig]);
    const rows = await sent();
    expect(rows.length).toBeGreaterThanOrEqual(2);
    const ack = rows.find((r) => r.message_id.startsWith(`rl.${t.ticketId}.`))!;
    const ackMail = (await rig.sink.waitFor((m: ReceivedMail) => toAddress(t.email)(m) && ofTicket(t.ticketId)(m)))[0]!;
    // The envelope sender is the row's own signed return path.
    const verp = makeBounceAddress(rig.app.ctx.config.SECRET_KEY, 'help.test', ack.id);
    expect(ackMail.mailFrom).toBe(verp);

    // Forged: another row's id with a made-up signature, and an unsigned bounce+ address.
    for (const forged of [`bounce+${ack.id}.${'a'.repeat(16)}@help.test`, `bounce+${ack.id}@help.test`]) {
      const err = await submitRaw(rig, forgedDsn(t.email, null, forged), { from: '', to: [forged] }).catch(
        (e: { responseCode?: number }) => e,
      );
      expect((err as { responseCode?: number }).responseCode).toBe(550);
    }
    expect((await sent()).map((r) => r.id)).toEqual(rows.map((r) => r.id));

    // Genuine: the customer's mailbox forwards elsewhere, the final MTA reports that other address and returns no headers.
    const genuine = await submitRaw(rig, forgedDsn('forwarded@elsewhere.test', null, verp), { from: '', to: [verp] });
    expect(genuine).toMatchObject({ status: 'held', reason: 'bounce' });
    expect(genuine.error).toContain(`outbound mail ${ack.id} marked failed`);
    const after = await outboxTo(t.email);
    expect(after.find((r) => r.id === ack.id)!.status).toBe('failed');
    for (const r of rows.filter((r) => r.id !== ack.id)) expect(after.find((x) => x.id === r.id)!.status).toBe('sent');
    expect(second.ticketId).not.toBe(t.ticketId);
    // Anything else sent to a return path (a person replying to Return-Path) is machine mail: held, never a ticket.
    const stray = await submitRaw(
      rig,
      [
        `From: ${t.email}`,
        `To: ${verp}`,
        'Subject: about my ticket',
        `Message-ID: <stray.${randomBytes(4).toString('hex')}@example.test>`,
        '',
        'Hello?',
        '',
      ].join('\r\n'),
      { from: t.email, to: [verp] },
    );
    expect(stray).toMatchObject({ status: 'held', reason: 'auto_reply', ticket_id: null });
    console.log(
      `VERP bounce: row ${ack.id} failed; ${rows.length - 1} other sent row(s) to the same address untouched; 2 forged return paths refused 550`,
    );
  });
});
