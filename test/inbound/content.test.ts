import { describe, expect, it } from 'vitest';
import { sanitizeFilename } from '../../src/mail/filename.js';
import { classifyMachineMail, parseDeliveryStatus, type ClassifyInput } from '../../src/jobs/inbound/classify.js';
import { sanitizeMailHtml, splitHtmlQuote } from '../../src/jobs/inbound/html-content.js';
import { ParseFailedError, ParsePool, THREAD_DEPTH } from '../../src/jobs/inbound/parse-pool.js';
import { REPLY_DELIMITER, visibleReplyText } from '../../src/jobs/inbound/text-content.js';
import { cpuHeavyMail } from './support/smtp.js';

const base: ClassifyInput = {
  headers: {},
  envelopeFrom: 'person@customer.example',
  fromAddress: 'person@customer.example',
  messageId: 'abc@customer.example',
  contentType: 'text/plain',
  reportType: null,
  dsn: null,
  subject: 'Hello',
  mailDomain: 'help.test',
  loopHeader: 'X-Replyline-Loop',
};
const classify = (over: Partial<ClassifyInput>) => classifyMachineMail({ ...base, ...over });

describe('machine-mail rules', () => {
  it('a person writing is not machine mail', () => {
    expect(classify({})).toBeNull();
    expect(classify({ headers: { 'auto-submitted': ['no'], precedence: ['normal'] } })).toBeNull();
  });

  it.each([
    [{ 'auto-submitted': ['auto-generated'] }, 'auto_reply'],
    [{ 'auto-submitted': ['auto-replied; owner-email="x@y"'] }, 'auto_reply'],
    [{ precedence: ['junk'] }, 'auto_reply'],
    [{ precedence: ['list'] }, 'auto_reply'],
    [{ 'x-autorespond': ['yes'] }, 'auto_reply'],
    [{ 'x-auto-response-suppress': ['OOF'] }, 'auto_reply'],
    [{ 'list-id': ['<x.lists.example>'] }, 'auto_reply'],
    [{ 'x-replyline-loop': ['help.test'] }, 'own_mail'],
    [{ 'x-replyline-loop': ['other-helpdesk.example'] }, 'auto_reply'],
  ])('%j → %s', (headers, kind) => {
    expect(classify({ headers })?.kind).toBe(kind);
  });

  it('our own Message-ID domain with the rl. prefix is own mail; a customer at the same domain is not', () => {
    expect(classify({ messageId: 'rl.1.aaaa.bbbb@help.test' })?.kind).toBe('own_mail');
    expect(classify({ messageId: 'CAF123@help.test' })).toBeNull();
  });

  it('MAILER-DAEMON / postmaster / null senders are machine mail; a bounce subject makes them bounces', () => {
    expect(classify({ envelopeFrom: '' })?.kind).toBe('auto_reply');
    expect(classify({ fromAddress: 'postmaster@mx.example' })?.kind).toBe('auto_reply');
    expect(classify({ fromAddress: 'MAILER-DAEMON@mx.example', subject: 'Undelivered Mail Returned to Sender' })?.kind).toBe('bounce');
    expect(classify({ headers: { 'x-failed-recipients': ['a@b.example'] } })?.kind).toBe('bounce');
  });

  it('a multipart/report delivery-status is a bounce when any recipient failed, else delivery_status', () => {
    const report = { contentType: 'multipart/report', reportType: 'delivery-status' };
    const failed = {
      recipients: parseDeliveryStatus('Final-Recipient: rfc822; a@b.example\nAction: failed\nStatus: 5.1.1\n'),
      originalMessageIds: [],
      permanent: true,
    };
    const delayed = {
      recipients: parseDeliveryStatus('Final-Recipient: rfc822; a@b.example\nAction: delayed\nStatus: 4.4.7\n'),
      originalMessageIds: [],
      permanent: false,
    };
    expect(classify({ ...report, dsn: failed })?.kind).toBe('bounce');
    expect(classify({ ...report, dsn: delayed })?.kind).toBe('delivery_status');
  });

  it('parses every per-recipient block of a delivery-status body, with folded fields', () => {
    const body = [
      'Reporting-MTA: dns; mx.example',
      '',
      'Final-Recipient: rfc822; <One@B.example>',
      'Action: failed',
      'Status: 5.1.1',
      'Diagnostic-Code: smtp; 550 5.1.1 user unknown',
      '    (folded detail)',
      '',
      'Final-Recipient: rfc822; two@b.example',
      'Action: delivered',
      'Status: 2.0.0',
    ].join('\r\n');
    const r = parseDeliveryStatus(body);
    expect(r).toHaveLength(2);
    expect(r[0]).toMatchObject({
      finalRecipient: 'one@b.example',
      action: 'failed',
      diagnosticCode: '550 5.1.1 user unknown (folded detail)',
    });
    expect(r[1]).toMatchObject({ finalRecipient: 'two@b.example', action: 'delivered' });
  });
});

describe('reply text', () => {
  it('keeps only what is above our delimiter, with the client quote header above it', () => {
    const text = `Thanks!\n\nOn Tue, 1 Oct 2024, Support <support@help.test> wrote:\n> ${REPLY_DELIMITER}\n> old`;
    expect(visibleReplyText(text)).toBe('Thanks!');
  });

  it('cuts an Outlook header block (From/Sent/To) and its separator', () => {
    const text =
      'New answer\n\n________________________________\nFrom: Support <support@help.test>\nSent: Monday\nTo: me\nSubject: Re: x\n\nold body';
    expect(visibleReplyText(text)).toBe('New answer');
  });

  it('never returns empty text for a message that is all quote', () => {
    expect(visibleReplyText('> only a quote\n> nothing else')).toBe('> only a quote\n> nothing else');
  });

  it('handles a 700 KB line of ">" without backtracking for minutes', () => {
    const text = `Hi\n${'>'.repeat(700_000)}A\nbye`;
    expect(visibleReplyText(text)).toContain('Hi');
  });
});

describe('HTML', () => {
  it('removes scripts, handlers, styles, javascript: and data: URLs; links open safely', () => {
    const out = sanitizeMailHtml(
      '<div style="position:fixed" onmouseover="x()">a<script>x()</script><a href="javascript:x()">j</a><a href="https://ok.example">ok</a><img src="data:image/png;base64,AAAA"><iframe src="https://x"></iframe></div>',
    );
    expect(out).toBe(
      '<div>a<a rel="noopener noreferrer nofollow" target="_blank">j</a><a href="https://ok.example" rel="noopener noreferrer nofollow" target="_blank">ok</a><img /></div>',
    );
  });

  it('keeps the whole body when everything would be cut (a forward wrapped in a blockquote)', () => {
    const html = '<blockquote>Forwarded text only</blockquote>';
    expect(splitHtmlQuote(html).visibleText).toBe('Forwarded text only');
  });

  it('cuts at an "On … wrote:" line that has no quote container', () => {
    const split = splitHtmlQuote('<p>Yes please</p><p>On Mon, 1 Jan 2024, Bob &lt;bob@x.example&gt; wrote:</p><p>old</p>');
    expect(split.visibleText).toBe('Yes please');
    expect(split.visibleHtml).not.toContain('old');
  });
});

describe('attachment file names', () => {
  it.each([
    ['../../etc/passwd', 'passwd'],
    ['C:\\Users\\x\\report.pdf', 'report.pdf'],
    ['invoice\u202efdp.exe', 'invoicefdp.exe'],
    ['  .hidden  ', 'hidden'],
    ['a<b>c:d"e|f?g*h.txt', 'a_b_c_d_e_f_g_h.txt'],
    ['CON.txt', '_CON.txt'],
    ['見積書.pdf', '見積書.pdf'],
  ])('%j → %j', (input, expected) => {
    expect(sanitizeFilename(input, 'application/octet-stream', 1)).toBe(expected);
  });

  it('names a nameless part from its type and keeps long names under 200 bytes with their extension', () => {
    expect(sanitizeFilename(undefined, 'application/pdf', 3)).toBe('attachment-3.pdf');
    const long = sanitizeFilename(`${'あ'.repeat(300)}.pdf`, 'application/pdf', 1);
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(200);
    expect(long.endsWith('.pdf')).toBe(true);
  });
});

describe('parse pool guard', () => {
  const opts = {
    envelopeFrom: 'a@b.example',
    mailDomain: 'help.test',
    loopHeader: 'X-Replyline-Loop',
    attachmentMaxBytes: 50 * 1024 * 1024,
  };

  it('stops a thread that uses more CPU than the limit, and the next message still parses on a fresh thread', async () => {
    const pool = new ParsePool(1);
    try {
      const err = await pool.analyze(cpuHeavyMail('a@b.example'), opts, 20).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ParseFailedError);
      expect((err as ParseFailedError).timedOut).toBe(true);
      const ok = await pool.analyze(Buffer.from('From: a@b.example\r\nSubject: fine\r\n\r\nhello\r\n'), opts, 2000);
      expect(ok.subject).toBe('fine');
    } finally {
      await pool.close();
    }
  });

  it("shares the threads fairly: a sender with a queue of messages does not go before another sender's one (issue #12)", async () => {
    const pool = new ParsePool(1);
    try {
      const mail = (s: string) => Buffer.from(`From: ${s}@b.example\r\nSubject: ${s}\r\n\r\nhello\r\n`);
      await pool.analyze(mail('warm'), opts, 5000); // the thread is up and idle
      const done: string[] = [];
      const names = Array.from({ length: 3 * THREAD_DEPTH }, (_, i) => `a${i}`);
      const flood = names.map((s) => pool.analyze(mail(s), opts, 5000, 'flooder').then(() => done.push(s)));
      const other = pool.analyze(mail('b1'), opts, 5000, 'someone-else').then(() => done.push('b1'));
      await Promise.all([...flood, other]);
      // The flood's first THREAD_DEPTH messages were already in the thread's line when b1 arrived;
      // b1 goes next, not after the whole flood.
      expect(done.indexOf('b1'), done.join()).toBe(THREAD_DEPTH);
    } finally {
      await pool.close();
    }
  });

  it('a message in line behind a runaway one is parsed on a fresh thread, not failed with it', async () => {
    const pool = new ParsePool(1);
    try {
      await pool.analyze(Buffer.from('From: a@b.example\r\nSubject: warm\r\n\r\nhello\r\n'), opts, 5000);
      const heavy = pool.analyze(cpuHeavyMail('a@b.example'), opts, 20).catch((e: unknown) => e);
      const next = pool.analyze(Buffer.from('From: c@b.example\r\nSubject: next\r\n\r\nhello\r\n'), opts, 2000);
      const err = await heavy;
      expect(err).toBeInstanceOf(ParseFailedError);
      expect((err as ParseFailedError).timedOut).toBe(true);
      expect((await next).subject).toBe('next');
    } finally {
      await pool.close();
    }
  });

  it('does not stop a heavy message that stays within the limit', async () => {
    const pool = new ParsePool(1);
    try {
      const a = await pool.analyze(cpuHeavyMail('a@b.example'), opts, 20_000);
      expect(a.attachments[0]!.size).toBe(9 * 1024 * 1024);
    } finally {
      await pool.close();
    }
  });
});
