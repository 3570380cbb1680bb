import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeOutboundMail } from '../../src/mail/compose.js';
import { parseBounceAddress, parseOurMessageId, parseReplyAddress, findTicketTags } from '../../src/mail/tokens.js';
import { OUTBOUND_KINDS } from '../../src/db/database.js';
import { REPLY_DELIMITER, preloadTemplates, renderMail } from '../../src/mail/render.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { addCc, makeStaff, notify, seedTicket, staffReply, uid, waitForRow } from './support/fixtures.js';
import { header, parse, rawHeaders, startRelaySink, to, type RelaySink } from './support/relay-sink.js';

let sink: RelaySink;
let app: TestApp;
const SECRET = 'test-secret-key-0123456789abcdef0123456789';

beforeAll(async () => {
  sink = await startRelaySink();
  app = await startTestApp({ OUTBOUND_SMTP_URL: sink.url, MAIL_FROM: 'Help Desk <support@help.test>' });
});
afterAll(async () => {
  await app?.teardown();
  await sink?.stop();
});

const bare = (v: string | undefined) => (v ?? '').replace(/^<|>$/g, '');

describe('templates', () => {
  const KINDS = OUTBOUND_KINDS;
  // Everything any template reads; each kind's own tests below check its real data end to end.
  const data = {
    brand: 'Help Desk',
    publicUrl: 'https://help.example',
    recipient: { name: 'Carol', email: 'carol@example.com' },
    delimiter: REPLY_DELIMITER,
    delimiterHint: 'hint',
    tag: '[RL-1-abc]',
    ticket: {
      id: 4711,
      subject: 'Printer',
      url: 'https://help.example/requests/4711',
      tag: '[RL-4711-abc]',
      statusLabel: 'Open',
      priorityLabel: 'High',
      priorityShown: true,
      csatLabel: 'Bad',
      csatComment: 'slow',
    },
    goodUrl: 'https://help.example/satisfaction/1.2.x/good',
    badUrl: 'https://help.example/satisfaction/1.2.x/bad',
    csat: { good: 1, bad: 2 },
    author: { display: 'Alice' },
    requester: { display: 'Carol (carol@example.com)' },
    message: { text: 'MESSAGE-BODY' },
    attachments: [],
    history: [],
    passwordUrl: 'https://help.example/password/new',
    url: 'https://help.example/password/set?token=x',
    resetUrl: 'https://help.example/password/new',
    expiresAt: '2026-12-03',
    changedAt: '2026-12-02',
    reason: 'spf fail',
    inboundId: 42,
    staffDomain: 'corp.example',
    dmarcMode: true,
    isNew: true,
    isReminder: true,
    date: '2026-12-02',
    tickets: [
      {
        id: 4711,
        subject: 'Printer',
        url: 'https://help.example/requests/4711',
        age: '3 d',
        statusLabel: 'Open',
        priorityLabel: 'High',
        urgent: true,
        mine: true,
      },
    ],
    count: 3,
    more: 2,
    requestsUrl: 'https://help.example/requests?filter=all',
  };
  const JAPANESE = /[\u3040-\u30ff\u4e00-\u9fff]/;

  it('every kind renders in English and Japanese: subject, text and HTML, in the right language, with no holes', () => {
    preloadTemplates(KINDS);
    for (const kind of KINDS) {
      for (const locale of ['en', 'ja'] as const) {
        const m = renderMail(kind, locale, data);
        const where = `${kind}/${locale}`;
        expect(m.subject.trim(), where).not.toBe('');
        expect(m.text.trim().length, where).toBeGreaterThan(20);
        expect(m.html, where).toContain(`lang="${locale}"`);
        for (const part of [m.subject, m.text, m.html]) expect(part, where).not.toMatch(/undefined|\[object Object\]/);
        // A missing translation shows up as an English body in the Japanese mail (and vice versa).
        expect(JAPANESE.test(m.text), where).toBe(locale === 'ja');
      }
    }
  });

  it('the satisfaction survey (a lifecycle mail) asks the question with both links, in both languages', () => {
    for (const locale of ['en', 'ja'] as const) {
      const m = renderMail('ticket_lifecycle', locale, { ...data, isReminder: false, isCsat: true });
      expect(m.subject).toBe(
        locale === 'en'
          ? 'How would you rate the support you received? (#4711 Printer)'
          : 'サポートの評価をお聞かせください（#4711 Printer）',
      );
      for (const part of [m.text, m.html]) {
        expect(part, locale).toContain(data.goodUrl);
        expect(part, locale).toContain(data.badUrl);
        expect(part, locale).not.toMatch(/undefined|\[object Object\]|still waiting|お待ちしております/);
      }
    }
  });
});

describe('acknowledgement', () => {
  it('is threaded to the customer mail, signed, loop-proof, in both MIME alternatives, and never echoes the sender text', async () => {
    const t = await seedTicket(app.ctx.db, { body: 'SECRET-SPAM-PAYLOAD buy now', subject: 'Printer on fire' });
    await notify(app.ctx, { type: 'ticket_created', ticketId: t.ticketId, messageId: t.messageId, authorId: t.customer.id });
    const [m] = await sink.waitFor(to(t.customer.email));
    const parsed = await parse(m!);

    // The envelope sender is this mail's own signed return path (VERP): a bounce names the outbox row.
    const row = await app.ctx.db
      .selectFrom('outbound_mails')
      .select('id')
      .where('message_id', '=', bare(header(m!, 'Message-ID')))
      .executeTakeFirstOrThrow();
    expect(m!.mailFrom).toMatch(/^bounce\+\d+\.[a-z2-7]{16}@help\.test$/);
    expect(parseBounceAddress(SECRET, 'help.test', m!.mailFrom)).toEqual({ outboundId: row.id });
    expect(parseBounceAddress(SECRET, 'help.test', m!.mailFrom.replace(/\.[a-z2-7]{16}@/, `.${'a'.repeat(16)}@`))).toBeNull();
    // Mail systems may change the case; another row's id, another domain or another local part never verifies.
    expect(parseBounceAddress(SECRET, 'help.test', m!.mailFrom.toUpperCase())).toEqual({ outboundId: row.id });
    expect(parseBounceAddress(SECRET, 'help.test', m!.mailFrom.replace(`+${row.id}.`, `+${row.id + 1}.`))).toBeNull();
    expect(parseBounceAddress(SECRET, 'help.test', m!.mailFrom.replace('@help.test', '@other.test'))).toBeNull();
    expect(parseBounceAddress(SECRET, 'help.test', m!.mailFrom.replace(/^bounce\+/, 'support+'))).toBeNull();
    // VERP=off, for relays that accept only a fixed sender: the envelope sender is MAIL_FROM's address.
    const fixed = await composeOutboundMail(app.ctx.db, { ...app.ctx.config, VERP: 'off' }, row);
    expect(fixed.envelope.from).toBe('support@help.test');
    expect(parsed.from?.value[0]).toMatchObject({ address: 'support@help.test', name: 'Help Desk' });
    expect(parsed.subject).toBe('Re: Printer on fire');
    // Our Message-ID: under MAIL_DOMAIN and verifiably ours, naming the ticket.
    expect(parseOurMessageId(SECRET, 'help.test', header(m!, 'Message-ID')!)).toEqual({ ticketId: t.ticketId });
    // Threaded to the customer's own mail, original spelling preserved.
    expect(bare(header(m!, 'In-Reply-To'))).toBe(t.inboundMessageId);
    expect(header(m!, 'References')).toContain(`<${t.inboundMessageId}>`);
    // Reply-To is the customer's own signed address for this ticket.
    const replyTo = parsed.replyTo?.value[0]?.address ?? '';
    expect(replyTo).toMatch(/^support\+.+@help\.test$/);
    expect(parseReplyAddress(SECRET, 'help.test', replyTo)).toEqual({ ticketId: t.ticketId, userId: t.customer.id });
    expect(header(m!, 'Auto-Submitted')).toBe('auto-replied');
    expect(header(m!, 'X-Auto-Response-Suppress')).toBe('All');
    expect(header(m!, 'X-Replyline-Loop')).toBe('help.test');
    expect(header(m!, 'Content-Type')).toMatch(/^multipart\/alternative/);

    const text = parsed.text ?? '';
    const html = String(parsed.html);
    expect(text.split('\n')[0]).toBe(REPLY_DELIMITER);
    expect(html).toContain(REPLY_DELIMITER);
    for (const body of [text, html]) {
      expect(body).toContain(`#${t.ticketId}`);
      expect(body).toContain(`http://127.0.0.1:3000/requests/${t.ticketId}`);
      expect(body).toContain('http://127.0.0.1:3000/password/new');
      expect(body).not.toContain('SECRET-SPAM-PAYLOAD');
      expect(findTicketTags(SECRET, body)).toEqual([t.ticketId]);
    }
    // Every link points at PUBLIC_URL, nowhere else.
    for (const href of html.matchAll(/href="([^"]+)"/g)) expect(href[1]).toMatch(/^http:\/\/127\.0\.0\.1:3000\//);
  });

  it('is written in Japanese for a Japanese-speaking customer and decodes cleanly', async () => {
    const t = await seedTicket(app.ctx.db, { locale: 'ja', name: '山田 太郎', subject: 'プリンターが動きません' });
    await notify(app.ctx, { type: 'ticket_created', ticketId: t.ticketId, messageId: t.messageId, authorId: t.customer.id });
    const [m] = await sink.waitFor(to(t.customer.email));
    const parsed = await parse(m!);
    expect(parsed.subject).toBe('Re: プリンターが動きません');
    expect(parsed.to && 'value' in parsed.to ? parsed.to.value[0]?.name : '').toBe('山田 太郎');
    expect(parsed.text).toContain('山田 太郎 様');
    expect(parsed.text).toContain(`リクエスト #${t.ticketId} を受け付けました`);
    expect(parsed.text).toContain('この行より上に入力してください');
    expect(String(parsed.html)).toContain('lang="ja"');
    expect(String(parsed.html)).toContain('オンラインでリクエストを確認するためのパスワードを取得');
    // Headers stay 7-bit: non-ASCII goes out as encoded words.
    // eslint-disable-next-line no-control-regex -- the 7-bit range starts at NUL
    expect(/[^\x00-\x7f]/.test(rawHeaders(m!))).toBe(false);
  });

  it('is not sent to a machine address such as noreply@', async () => {
    const t = await seedTicket(app.ctx.db, { email: `noreply-${uid()}@example.com` });
    const staff = await makeStaff(app.ctx.db);
    const ids = await notify(app.ctx, { type: 'ticket_created', ticketId: t.ticketId, messageId: t.messageId, authorId: t.customer.id });
    const rows = await app.ctx.db.selectFrom('outbound_mails').select(['kind', 'recipient']).where('id', 'in', ids).execute();
    expect(rows.some((r) => r.kind === 'acknowledgement')).toBe(false);
    expect(rows.some((r) => r.kind === 'staff_notification' && r.recipient === staff.email)).toBe(true);
  });
});

describe('staff notification', () => {
  it('carries the message, lists attachments, and gives each staff member their own Reply-To', async () => {
    const a = await makeStaff(app.ctx.db, { name: 'Alice Agent' });
    const b = await makeStaff(app.ctx.db, { name: 'Bob Agent', locale: 'ja' });
    const t = await seedTicket(app.ctx.db, {
      body: 'Line one\n<script>alert(1)</script> & more',
      attachments: ['invoice.pdf', 'photo.jpg'],
    });
    await notify(app.ctx, { type: 'ticket_created', ticketId: t.ticketId, messageId: t.messageId, authorId: t.customer.id });
    const [ma] = await sink.waitFor((m) => to(a.email)(m) && header(m, 'Message-ID')!.includes(`rl.${t.ticketId}.`));
    const [mb] = await sink.waitFor((m) => to(b.email)(m) && header(m, 'Message-ID')!.includes(`rl.${t.ticketId}.`));
    const pa = await parse(ma!);
    const pb = await parse(mb!);

    expect(header(ma!, 'Auto-Submitted')).toBe('auto-generated');
    expect(pa.subject).toBe(`[#${t.ticketId}] Printer on fire (New)`);
    expect(pb.subject).toBe(`[#${t.ticketId}] Printer on fire（新規）`);
    expect(pa.text).toContain('Line one\n<script>alert(1)</script> & more');
    expect(pa.text).toContain('- invoice.pdf (2 KB)');
    expect(pa.text).toContain('- photo.jpg (2 KB)');
    expect(pa.text).toContain('#status solved|pending|open');
    // User content is escaped in HTML, never live markup.
    expect(String(pa.html)).toContain('&lt;script&gt;alert(1)&lt;/script&gt; &amp; more');
    expect(String(pa.html)).not.toContain('<script>');

    const ra = parseReplyAddress(SECRET, 'help.test', pa.replyTo!.value[0]!.address!);
    const rb = parseReplyAddress(SECRET, 'help.test', pb.replyTo!.value[0]!.address!);
    expect(ra).toEqual({ ticketId: t.ticketId, userId: a.id });
    expect(rb).toEqual({ ticketId: t.ticketId, userId: b.id });
    // The Japanese agent gets the Japanese template.
    expect(pb.text).toContain(`さんから新しいリクエスト #${t.ticketId}`);
    expect(pb.text).toContain('添付ファイル');
  });

  it('goes only to the assignee when the ticket has one', async () => {
    const assignee = await makeStaff(app.ctx.db);
    const other = await makeStaff(app.ctx.db);
    const t = await seedTicket(app.ctx.db);
    await app.ctx.db.updateTable('tickets').set({ assignee_id: assignee.id }).where('id', '=', t.ticketId).execute();
    const ids = await notify(app.ctx, {
      type: 'message_added',
      ticketId: t.ticketId,
      messageId: t.messageId,
      authorId: t.customer.id,
      visibility: 'public',
    });
    const rows = await app.ctx.db.selectFrom('outbound_mails').select(['kind', 'recipient']).where('id', 'in', ids).execute();
    const staffRows = rows.filter((r) => r.kind === 'staff_notification');
    expect(staffRows.map((r) => r.recipient)).toEqual([assignee.email]);
    expect(rows.some((r) => r.recipient === other.email)).toBe(false);
  });
});

describe('ticket update', () => {
  it('mails a staff reply to requester and CCs, threaded after the acknowledgement, never back to the author', async () => {
    const staff = await makeStaff(app.ctx.db, { name: 'Alice Agent', email: `alice-${uid()}@staff.example` });
    const t = await seedTicket(app.ctx.db);
    const cc = await addCc(app.ctx.db, t.ticketId, `cc-${uid()}@example.org`, 'ja');
    const [ackId] = await notify(app.ctx, {
      type: 'ticket_created',
      ticketId: t.ticketId,
      messageId: t.messageId,
      authorId: t.customer.id,
    });
    const ackRow = await waitForRow(app.ctx.db, ackId!, ['sent']);

    const reply = await staffReply(app.ctx.db, t.ticketId, staff.id, 'We are sending a fire engine.');
    const ids = await notify(app.ctx, {
      type: 'message_added',
      ticketId: t.ticketId,
      messageId: reply.id,
      authorId: staff.id,
      visibility: 'public',
    });
    const rows = await app.ctx.db.selectFrom('outbound_mails').select(['kind', 'recipient']).where('id', 'in', ids).execute();
    // The other agents notified about the ticket get an FYI (staff_notification); customers get the reply.
    expect(
      rows
        .filter((r) => r.kind === 'ticket_update')
        .map((r) => r.recipient)
        .sort(),
    ).toEqual([cc.email, t.customer.email].sort());
    expect(rows.filter((r) => r.kind === 'staff_notification').map((r) => r.recipient)).not.toContain(staff.email);

    const [m] = await sink.waitFor((x) => to(t.customer.email)(x) && header(x, 'Auto-Submitted') === 'auto-generated');
    const parsed = await parse(m!);
    expect(parsed.subject).toBe('Re: Printer on fire');
    expect(parsed.text).toContain('Alice Agent wrote on request');
    expect(parsed.text).toContain('We are sending a fire engine.');
    // The agent's personal address is not shown to the customer.
    expect(parsed.text).not.toContain(staff.email);
    // Parent = the newest mail the customer has seen (our acknowledgement); the chain starts at their first mail.
    expect(bare(header(m!, 'In-Reply-To'))).toBe(ackRow.message_id);
    const refs = (header(m!, 'References') ?? '').split(/\s+/).map(bare);
    expect(refs[0]).toBe(t.inboundMessageId);
    expect(refs).toContain(ackRow.message_id);
    expect(parseOurMessageId(SECRET, 'help.test', header(m!, 'Message-ID')!)).toEqual({ ticketId: t.ticketId });

    const [mc] = await sink.waitFor(to(cc.email));
    const pc = await parse(mc!);
    expect(pc.text).toContain('さんがリクエスト');
    expect(parseReplyAddress(SECRET, 'help.test', pc.replyTo!.value[0]!.address!)).toEqual({ ticketId: t.ticketId, userId: cc.id });
  });

  it('sends nothing to customers for an internal note (only the other staff hear of it)', async () => {
    const staff = await makeStaff(app.ctx.db);
    const t = await seedTicket(app.ctx.db);
    const cc = await addCc(app.ctx.db, t.ticketId, `cc-${uid()}@example.com`);
    const note = await staffReply(app.ctx.db, t.ticketId, staff.id, 'internal only', 'internal');
    const ids = await notify(app.ctx, {
      type: 'message_added',
      ticketId: t.ticketId,
      messageId: note.id,
      authorId: staff.id,
      visibility: 'internal',
    });
    const rows = await app.ctx.db
      .selectFrom('outbound_mails as o')
      .innerJoin('users as u', 'u.id', 'o.user_id')
      .select(['o.kind', 'u.role', 'o.user_id'])
      .where('o.id', 'in', ids.length ? ids : [0])
      .execute();
    expect(rows.every((r) => r.kind === 'staff_notification' && r.role === 'staff')).toBe(true);
    expect(rows.map((r) => r.user_id)).not.toContain(staff.id);
    expect(rows.map((r) => r.user_id)).not.toContain(t.customer.id);
    expect(rows.map((r) => r.user_id)).not.toContain(cc.id);
  });

  it('never mails our own addresses, even as a participant', async () => {
    const t = await seedTicket(app.ctx.db);
    await addCc(app.ctx.db, t.ticketId, 'support@help.test');
    await addCc(app.ctx.db, t.ticketId, `support+x@help.test`);
    const staff = await makeStaff(app.ctx.db);
    const reply = await staffReply(app.ctx.db, t.ticketId, staff.id, 'hello');
    const ids = await notify(app.ctx, {
      type: 'message_added',
      ticketId: t.ticketId,
      messageId: reply.id,
      authorId: staff.id,
      visibility: 'public',
    });
    const rows = await app.ctx.db.selectFrom('outbound_mails').select('recipient').where('id', 'in', ids).execute();
    expect(rows.map((r) => r.recipient)).toEqual([t.customer.email]);
  });
});
