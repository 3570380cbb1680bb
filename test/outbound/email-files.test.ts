import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeCc } from '../../src/db/queries/ticket-participants.js';
import { makeFileToken } from '../../src/mail/tokens.js';
import { customerAddress, ofTicket, startEmailOnlyRig, type EmailOnlyRig } from './support/email-only.js';
import { mid } from './support/flow.js';
import { header, parse, to, type ReceivedMail } from './support/relay-sink.js';
import { deliverRaw, waitInbound } from './support/smtp-client.js';
import { buildMail } from './support/staff-mail.js';

/**
 * Files for people who only use email, over real SMTP both ways: the bytes a
 * customer or agent attaches are the bytes the other side receives (as MIME
 * parts up to MAIL_ATTACH_MAX_BYTES, inline images as cid: parts); bigger
 * files, or mail a relay refuses for its size, become signed per-recipient
 * links that download without signing in, and stop working when they expire
 * or the recipient is removed from the request.
 */
const SECRET = 'test-secret-key-0123456789abcdef0123456789';
const CAP = 60_000;
let rig: EmailOnlyRig;

beforeAll(async () => {
  rig = await startEmailOnlyRig({ MAIL_ATTACH_MAX_BYTES: String(CAP) });
}, 60_000);
afterAll(async () => {
  await rig?.stop();
});

const bytes = (n: number) => randomBytes(n);

/** A customer opens a request by mail with files, copying `cc` directly. */
async function customerMail(
  customer: string,
  opts: {
    subject: string;
    cc?: string;
    files: Array<{ filename: string; content: Buffer; contentType: string; cid?: string }>;
    html?: string;
  },
) {
  const messageId = mid('cust');
  const raw = await buildMail({
    from: `Carol <${customer}>`,
    to: 'support@help.test',
    cc: opts.cc,
    subject: opts.subject,
    text: 'The printer prints only this test page.',
    html: opts.html,
    attachments: opts.files,
    headers: { 'Message-ID': `<${messageId}>` },
  });
  await deliverRaw(rig.app.smtp!.port, raw, { from: customer, to: ['support@help.test', ...(opts.cc ? [opts.cc] : [])] });
  const inbound = await waitInbound(rig.app.ctx.db, messageId);
  expect(inbound.status).toBe('processed');
  return inbound.ticket_id!;
}

const fileLinks = (text: string, base: string) =>
  [...text.matchAll(new RegExp(`${base.replace(/[.]/g, '\\.')}/files/[A-Za-z0-9.]+`, 'g'))].map((m) => m[0]);

async function download(url: string) {
  const res = await fetch(url, { redirect: 'manual' });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

function staffNotification(ticketId: number): Promise<ReceivedMail> {
  return rig.sink.waitFor((m) => to(rig.alice.email)(m) && ofTicket(ticketId)(m)).then((r) => r[0]!);
}

describe('files by email', () => {
  it("the customer's files reach staff as MIME parts byte for byte (inline image as a cid: part), and the agent's files reach the customer", async () => {
    const customer = customerAddress('carol');
    const pdf = bytes(20_000);
    const png = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), bytes(3_000)]);
    const ticketId = await customerMail(customer, {
      subject: 'Printer prints garbage',
      files: [
        { filename: 'test-page.pdf', content: pdf, contentType: 'application/pdf' },
        { filename: 'screenshot.png', content: png, contentType: 'image/png', cid: 'shot@carol.test' },
      ],
      html: '<p>The printer prints only this test page.</p><p><img src="cid:shot@carol.test"></p>',
    });

    const note = await staffNotification(ticketId);
    const parsed = await parse(note);
    const got = new Map(parsed.attachments.map((a) => [a.filename, a]));
    expect(got.get('test-page.pdf')?.content.equals(pdf)).toBe(true);
    expect(got.get('screenshot.png')?.content.equals(png)).toBe(true);
    // Our own Content-ID, shown in our HTML; never the sender's identifier.
    const shot = got.get('screenshot.png')!;
    expect(shot.contentDisposition).toBe('inline');
    expect(shot.cid).toMatch(/^file\d+@help\.test$/);
    expect(String(parsed.html)).toContain(`cid:${shot.cid}`);
    expect(parsed.text).not.toContain('/files/');

    const invoice = bytes(12_345);
    const { inbound } = await rig.flow.staffAnswers(note, 'The corrected invoice is attached.', {
      attachments: [{ filename: 'invoice-2026-11-corrected.pdf', content: invoice, contentType: 'application/pdf' }],
    });
    expect(inbound.status).toBe('processed');
    const [update] = await rig.sink.waitFor((m) => to(customer)(m) && ofTicket(ticketId)(m) && m.raw.includes('invoice-2026-11'));
    const up = await parse(update!);
    expect(up.text).toContain('The corrected invoice is attached.');
    const att = up.attachments.find((a) => a.filename === 'invoice-2026-11-corrected.pdf');
    expect(att?.content.equals(invoice)).toBe(true);
    // Threaded and marked as before.
    expect(header(update!, 'In-Reply-To')).toBeTruthy();
    expect(header(update!, 'Auto-Submitted')).toBe('auto-generated');
  });

  it('over MAIL_ATTACH_MAX_BYTES each file is a per-recipient link that downloads signed out, and stops working after expiry or removal', async () => {
    const customer = customerAddress('carol');
    const erin = customerAddress('erin');
    const big = bytes(CAP + 5_000);
    const ticketId = await customerMail(customer, {
      subject: 'Huge log',
      files: [{ filename: 'printer.log', content: big, contentType: 'text/plain' }],
    });
    const note = await staffNotification(ticketId);
    const parsed = await parse(note);
    expect(parsed.attachments).toHaveLength(0);
    const [staffLink] = fileLinks(parsed.text ?? '', rig.base);
    expect(staffLink).toBeTruthy();
    expect(String(parsed.html)).toContain(`href="${staffLink}"`);
    const d = await download(staffLink!);
    expect(d.status).toBe(200);
    expect(d.body.equals(big)).toBe(true);
    // The portal's download headers: always a download, never rendered as us.
    expect(d.headers.get('content-disposition')).toMatch(/^attachment; filename="printer\.log"/);
    expect(d.headers.get('x-content-type-options')).toBe('nosniff');
    expect(d.headers.get('content-security-policy')).toContain('sandbox');
    expect(d.headers.get('cache-control')).toContain('no-store');

    // The agent's big file, to the customer and a CC added in the same reply: one link each.
    const dump = bytes(CAP + 1_000);
    await rig.flow.staffAnswers(note, `#cc add ${erin}\n\nHere is the firmware.`, {
      attachments: [{ filename: 'firmware.bin', content: dump, contentType: 'application/octet-stream' }],
    });
    const [forCustomer] = await rig.sink.waitFor((m) => to(customer)(m) && ofTicket(ticketId)(m) && m.raw.includes('firmware'));
    const [forErin] = await rig.sink.waitFor((m) => to(erin)(m) && ofTicket(ticketId)(m));
    const [customerLink] = fileLinks((await parse(forCustomer!)).text ?? '', rig.base);
    const [erinLink] = fileLinks((await parse(forErin!)).text ?? '', rig.base);
    expect(customerLink).toBeTruthy();
    expect(erinLink).toBeTruthy();
    expect(erinLink).not.toBe(customerLink);
    expect((await download(erinLink!)).body.equals(dump)).toBe(true);

    // Removing Erin from the request revokes her link, not the customer's.
    const erinUser = await rig.app.ctx.db.selectFrom('users').select('id').where('email', '=', erin).executeTakeFirstOrThrow();
    expect(await removeCc(rig.app.ctx.db, ticketId, erinUser.id)).toBe(true);
    expect((await download(erinLink!)).status).toBe(404);
    expect((await download(customerLink!)).status).toBe(200);

    // A correctly signed link whose time is up fails; so does a tampered one.
    const token = customerLink!.split('/files/')[1]!;
    const [attachmentId, userId] = token.split('.').map(Number) as [number, number];
    const expired = makeFileToken(SECRET, { attachmentId, userId, expiresAt: Math.floor(Date.now() / 1000) - 1 });
    expect((await download(`${rig.base}/files/${expired}`)).status).toBe(404);
    const stillValid = makeFileToken(SECRET, { attachmentId, userId, expiresAt: Math.floor(Date.now() / 1000) + 60 });
    expect((await download(`${rig.base}/files/${stillValid}`)).status).toBe(200);
    const forged = token.replace(/^\d+\.\d+/, `${attachmentId}.${erinUser.id}`);
    expect((await download(`${rig.base}/files/${forged}`)).status).toBe(404);
  });

  it('a relay that refuses the size (552) gets the same mail again with links', async () => {
    const customer = customerAddress('carol');
    const ticketId = await customerMail(customer, { subject: 'Small relay', files: [] });
    const note = await staffNotification(ticketId);
    const file = bytes(30_000);
    rig.sink.maxMessageBytes = 35_000;
    try {
      await rig.flow.staffAnswers(note, 'Manual attached.', {
        attachments: [{ filename: 'manual.pdf', content: file, contentType: 'application/pdf' }],
      });
      const [update] = await rig.sink.waitFor((m) => to(customer)(m) && ofTicket(ticketId)(m) && m.raw.includes('manual.pdf'));
      const p = await parse(update!);
      expect(p.attachments).toHaveLength(0);
      const [link] = fileLinks(p.text ?? '', rig.base);
      expect((await download(link!)).body.equals(file)).toBe(true);
      const row = await rig.app.ctx.db
        .selectFrom('outbound_mails')
        .select(['status'])
        .where('message_id', '=', (header(update!, 'Message-ID') ?? '').replace(/^<|>$/g, ''))
        .executeTakeFirstOrThrow();
      expect(row.status).toBe('sent');
    } finally {
      rig.sink.maxMessageBytes = null;
    }
  });
});
