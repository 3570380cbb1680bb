import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from '../outbound/support/relay-sink.js';
import { Client } from '../portal/support.js';
import { makeUser, openTicket, settle, startRig, submitRaw, toAddress, SUPPORT, type Rig } from './support/rig.js';

/**
 * Finding 4 of issue #12: a DSN was matched by its Final-Recipient alone and
 * marked the newest `sent` or `queued` mail to that address failed. A victim
 * whose set-password link was stuck in a relay outage never got it: anyone
 * could cancel it with a forged "550 user unknown". A bounce now counts only
 * with the signed Message-ID of the very mail it concerns, and only for a
 * mail already sent; queued mail is never touched.
 */
let rig: Rig;
beforeAll(async () => {
  rig = await startRig({ OUTBOUND_RETRY_BASE_MS: '300' });
});
afterAll(() => rig?.teardown());

function forgedDsn(victim: string, messageId: string) {
  const b = `b-${randomBytes(4).toString('hex')}`;
  return [
    'From: Mail Delivery System <MAILER-DAEMON@mx.evil.test>',
    `To: ${SUPPORT}`,
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
    `--${b}`,
    'Content-Type: text/rfc822-headers',
    '',
    `From: ${SUPPORT}`,
    `To: ${victim}`,
    `Message-ID: <${messageId}>`,
    '',
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
});
