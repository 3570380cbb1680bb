import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.js';
import { makeStaff, messagesOf, openTicket, outboxOf, replyAddress, ticket } from './support/fixtures.js';
import { deliver, queuedId, sendOnce, uid, waitProcessed } from './support/smtp.js';

let app: TestApp;
let port: number;
const db = () => app.ctx.db;

beforeAll(async () => {
  app = await startTestApp({ ATTACHMENT_MAX_BYTES: '4096', STAFF_AUTH: 'token' });
  port = app.smtp!.port;
});
afterAll(() => app.teardown());

const JA_BODY = 'お問い合わせです。プリンターが壊れました';
const BODIES: Array<[string, string, string, string]> = [
  ['ISO-2022-JP', 'iso-2022-jp', '7bit', '1b2442242a4c6424243967246f243b2447243921232557256a2573253f213c242c3275246c245e2437243f1b2842'],
  ['Shift_JIS', 'shift_jis', '8bit', '82a896e282a28d8782ed82b982c582b781428376838a8393835e815b82aa89f382ea82dc82b582bd'],
  ['EUC-JP', 'euc-jp', '8bit', 'a4aacce4a4a4b9e7a4efa4bba4c7a4b9a1a3a5d7a5eaa5f3a5bfa1bca4acb2f5a4eca4dea4b7a4bf'],
];

async function sendRaw(raw: Buffer, from: string) {
  return waitProcessed(db(), queuedId(await sendOnce(port, { from, to: ['support@help.test'] }, raw)));
}

describe('charsets', () => {
  it.each(BODIES)(
    'decodes a %s body, an ISO-2022-JP encoded-word subject and From name, and gives the new account the ja locale',
    async (_n, charset, cte, hex) => {
      const email = `ja-${uid()}@customer.example`;
      const raw = Buffer.concat([
        Buffer.from(
          `From: =?ISO-2022-JP?B?GyRCOzNFREJATzobKEI=?= <${email}>\r\nTo: support@help.test\r\nSubject: =?ISO-2022-JP?B?GyRCOCtAUSRiJGowTU1qGyhC?=\r\n` +
            `Message-ID: <ja.${uid()}@customer.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=${charset}\r\nContent-Transfer-Encoding: ${cte}\r\n\r\n`,
        ),
        Buffer.from(hex, 'hex'),
        Buffer.from('\r\n'),
      ]);
      const row = await sendRaw(raw, email);
      expect(row.status).toBe('processed');
      expect((await ticket(db(), row.ticket_id!)).subject).toBe('見積もり依頼');
      expect((await messagesOf(db(), row.ticket_id!))[0]!.body_text).toBe(JA_BODY);
      const user = await db().selectFrom('users').select(['name', 'locale']).where('email', '=', email).executeTakeFirstOrThrow();
      expect(user).toEqual({ name: '山田太郎', locale: 'ja' });
    },
  );

  it.each([
    ['GB18030', 'gb18030', 'c4e3bac3a3acb4f2d3a1bbfabbb5c1cb', '你好，打印机坏了'],
    ['windows-1252', 'windows-1252', '436166e9206372e86d6520e0206c61206672616ee761697365', 'Café crème à la française'],
    ['no charset at all (UTF-8 bytes)', '', Buffer.from('Grüße aus Köln').toString('hex'), 'Grüße aus Köln'],
  ])('decodes a %s body', async (_n, charset, hex, expected) => {
    const email = `cs-${uid()}@customer.example`;
    const ct = charset ? `Content-Type: text/plain; charset=${charset}\r\n` : '';
    const raw = Buffer.concat([
      Buffer.from(`From: ${email}\r\nSubject: cs\r\nMIME-Version: 1.0\r\n${ct}Content-Transfer-Encoding: 8bit\r\n\r\n`),
      Buffer.from(hex, 'hex'),
      Buffer.from('\r\n'),
    ]);
    const row = await sendRaw(raw, email);
    expect((await messagesOf(db(), row.ticket_id!))[0]!.body_text).toBe(expected);
  });

  it('strips a Japanese Gmail quote header and our reply delimiter', async () => {
    const t = await openTicket(db(), port);
    const text =
      'ありがとうございます。解決しました。\n\n2024年5月1日(水) 10:00 Support <support@help.test>:\n> ##- Please type your reply above this line -##\n> 以前のメッセージ\n';
    const row = await deliver(db(), port, { from: t.email, to: replyAddress(t.ticketId, t.requesterId), subject: 'Re', text });
    expect((await messagesOf(db(), row.ticket_id!)).at(-1)!.body_text).toBe('ありがとうございます。解決しました。');
  });

  it('cuts at our "reply above this line" delimiter even without quote markers', async () => {
    const t = await openTicket(db(), port);
    const text =
      'Works now, thanks!\n\nOn Tue, Support wrote:\n##- Please type your reply above this line -##\nYour request #1 was updated.\nAgent: did you restart it?\n';
    const row = await deliver(db(), port, { from: t.email, to: replyAddress(t.ticketId, t.requesterId), subject: 'Re', text });
    const m = (await messagesOf(db(), row.ticket_id!)).at(-1)!;
    expect(m.body_text).toBe('Works now, thanks!');
    expect(m.original_text).toContain('did you restart it?');
  });
});

describe('HTML and attachments', () => {
  it('sanitises HTML: no scripts or handlers, remote images not loaded, inline cid images kept with the message', async () => {
    const email = `html-${uid()}@customer.example`;
    const png = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex');
    const row = await deliver(db(), port, {
      from: email,
      to: 'support@help.test',
      subject: 'html',
      html: '<p onclick="steal()">Hello <b>there</b><script>alert(1)</script></p><img src="https://tracker.example/pixel.gif"><img src="cid:logo@x"><a href="javascript:alert(1)">x</a><style>p{color:red}</style>',
      attachments: [{ filename: 'logo.png', content: png, cid: 'logo@x', contentDisposition: 'inline' }],
    });
    const m = (await messagesOf(db(), row.ticket_id!))[0]!;
    for (const html of [m.body_html!, m.original_html!]) {
      expect(html).toContain('<b>there</b>');
      expect(html).not.toMatch(/script|onclick|javascript:|<style|color:red/);
      expect(html).not.toMatch(/\ssrc="https:\/\/tracker/);
      expect(html).toContain('data-remote-src="https://tracker.example/pixel.gif"');
      expect(html).toContain('src="cid:logo@x"');
    }
    expect(m.body_text).toBe('Hello there\nx');
    const att = await db().selectFrom('attachments').selectAll().where('message_id', '=', m.id).execute();
    expect(att).toHaveLength(1);
    expect(att[0]).toMatchObject({ filename: 'logo.png', content_id: 'logo@x', inline: true, content_type: 'image/png', size: png.length });
    expect(Buffer.compare(att[0]!.content, png)).toBe(0);
  });

  it('drops the quoted history from an HTML-only reply (Gmail blockquote)', async () => {
    const t = await openTicket(db(), port);
    const html =
      '<div dir="ltr">Fixed, thank you!</div><div class="gmail_quote"><div class="gmail_attr">On Mon, Support &lt;support@help.test&gt; wrote:</div><blockquote>old text</blockquote></div>';
    const row = await deliver(db(), port, { from: t.email, to: replyAddress(t.ticketId, t.requesterId), subject: 'Re', html });
    const m = (await messagesOf(db(), row.ticket_id!)).at(-1)!;
    expect(m.body_text).toBe('Fixed, thank you!');
    expect(m.body_html).not.toContain('old text');
    expect(m.original_html).toContain('old text');
  });

  it('stores attachments with sanitised (RFC 2231 decoded) names, and leaves out those over ATTACHMENT_MAX_BYTES with a note', async () => {
    const email = `att-${uid()}@customer.example`;
    const row = await deliver(db(), port, {
      from: email,
      to: 'support@help.test',
      subject: 'files',
      text: 'see attached',
      attachments: [
        { filename: '../../etc/passwd', content: 'root:x:0:0' },
        { filename: '見積書\u202egpj.exe', content: 'MZ' },
        { filename: 'huge.bin', content: Buffer.alloc(8192, 7) },
      ],
    });
    const m = (await messagesOf(db(), row.ticket_id!))[0]!;
    const att = await db()
      .selectFrom('attachments')
      .select(['filename', 'size', 'sha256'])
      .where('message_id', '=', m.id)
      .orderBy('id')
      .execute();
    expect(att.map((a) => a.filename)).toEqual(['passwd', '見積書gpj.exe']);
    expect(att[0]!.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(m.body_text).toContain('see attached');
    expect(m.body_text).toMatch(/huge\.bin.*exceeds the size limit/);
  });
});

describe('staff replies (STAFF_AUTH=token)', () => {
  it('a staff reply through their reply address becomes a public message and reaches the requester', async () => {
    const t = await openTicket(db(), port);
    const staff = await makeStaff(db());
    const row = await deliver(db(), port, {
      from: staff.email,
      to: replyAddress(t.ticketId, staff.id),
      subject: 'Re',
      text: 'Please restart it.\n\n> Help!',
    });
    expect(row.status).toBe('processed');
    const m = (await messagesOf(db(), t.ticketId)).at(-1)!;
    expect(m).toMatchObject({ author_id: staff.id, visibility: 'public', body_text: 'Please restart it.' });
    expect(
      (await outboxOf(db(), t.ticketId)).some((o) => o.kind === 'ticket_update' && o.recipient === t.email && o.ticket_message_id === m.id),
    ).toBe(true);
    expect((await ticket(db(), t.ticketId)).status).toBe('open');
  });

  it('staff commands set status and make internal notes that no customer is mailed about', async () => {
    const t = await openTicket(db(), port);
    const staff = await makeStaff(db());
    await deliver(db(), port, {
      from: staff.email,
      to: replyAddress(t.ticketId, staff.id),
      subject: 'Re',
      text: '#note\nCustomer seems confused.',
    });
    const note = (await messagesOf(db(), t.ticketId)).at(-1)!;
    expect(note).toMatchObject({ visibility: 'internal', body_text: 'Customer seems confused.' });
    expect((await outboxOf(db(), t.ticketId)).some((o) => o.ticket_message_id === note.id && o.recipient === t.email)).toBe(false);
    await deliver(db(), port, {
      from: staff.email,
      to: replyAddress(t.ticketId, staff.id),
      subject: 'Re',
      text: '#status solved\nAll done.',
    });
    expect((await ticket(db(), t.ticketId)).status).toBe('solved');
  });

  it('a staff address without a valid token is held as auth_failed and changes nothing', async () => {
    const t = await openTicket(db(), port);
    const staff = await makeStaff(db());
    const row = await deliver(db(), port, {
      from: staff.email,
      to: replyAddress(t.ticketId, t.requesterId),
      subject: 'Re',
      text: '#status solved\nforged',
    });
    expect(row).toMatchObject({ status: 'held', reason: 'auth_failed' });
    expect(await messagesOf(db(), t.ticketId)).toHaveLength(1);
    expect((await ticket(db(), t.ticketId)).status).toBe('new');
  });

  it('unauthenticated staff mail that threads to no ticket is held auth_failed, not opened as a ticket "from staff"', async () => {
    const staff = await makeStaff(db());
    const row = await deliver(db(), port, {
      from: staff.email,
      to: 'support@help.test',
      subject: 'Internal request',
      text: 'New laptop please',
    });
    expect(row).toMatchObject({ status: 'held', reason: 'auth_failed', ticket_id: null });
    const opened = await db().selectFrom('tickets').select('id').where('requester_id', '=', staff.id).execute();
    expect(opened).toEqual([]);
  });
});
