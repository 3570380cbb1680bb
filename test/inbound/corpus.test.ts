import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertInboundMessage } from '../../src/db/queries/inbound-messages.js';
import { analyzeMessage, type AnalyzedMessage } from '../../src/jobs/inbound/analyze.js';
import { sanitizeMailHtml, splitHtmlQuote } from '../../src/jobs/inbound/html-content.js';
import { processInboundMessage } from '../../src/jobs/inbound/batch.js';
import { visibleReplyText } from '../../src/jobs/inbound/text-content.js';
import { LOOP_HEADER } from '../../src/mail/compose.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { queuedId, sendOnce, waitProcessed } from './support/smtp.js';

/**
 * The shared third-party corpus (../shared/corpus, see its README): every
 * entry is accepted and processed without error, and upstream's portable
 * expectations hold — except where we deliberately differ, listed below
 * with the reason.
 */

const repoRoot = path.resolve(import.meta.dirname, '../..');
const corpusDir = path.resolve(repoRoot, '../shared/corpus');
if (!existsSync(path.join(corpusDir, 'manifest.json'))) {
  throw new Error(
    `The shared test corpus is missing: expected ${corpusDir}/manifest.json (CI checks it out as ../shared/corpus next to the repo).`,
  );
}

interface Entry {
  path: string;
  source: string;
  kind: string;
  format: 'rfc822' | 'text-body' | 'html-body';
  expect: Record<string, unknown> & {
    visibleText?: string;
    visibleTextCompare?: 'exact' | 'trim' | 'trimLines' | 'ignoreWhitespace';
    visibleTextStartsWith?: string;
    visibleTextContains?: string[];
    subject?: string;
    subjectCompare?: string;
    fromAddress?: string;
    messageId?: string;
    inReplyTo?: string[];
    references?: string[];
    isBounce?: boolean;
    isDeliveryStatusReport?: boolean;
    isAutoReply?: boolean;
    maxParseMs?: number;
    fromName?: string;
    toAddresses?: string[];
    ccAddresses?: string[];
    attachmentCount?: number;
    attachmentNames?: string[];
    dsn?: Record<string, unknown>;
  };
}

const manifest = JSON.parse(readFileSync(path.join(corpusDir, 'manifest.json'), 'utf8')) as Entry[];
const read = (e: Entry) => readFileSync(path.join(corpusDir, e.path));

/**
 * Manifest keys this test does not check, and why. Every other key in `expect` is checked.
 * (`date`: replyline does not read the Date header at all; it is the sender's claim, and tickets use our receive time.)
 */
export const SKIPPED_KEYS = {
  date: 'the Date header is not read: tickets and messages use the time we received the mail',
} as const;

/** Deliberate differences from upstream, by path → expectation key → why. */
const ALLOWLIST: Record<string, Record<string, string>> = {
  'github-email_reply_parser/test/emails/email_1_1.txt': {
    visibleText:
      'we use crisp-oss/email-reply-parser, which keeps "-Abhishek Kona" and the list footer; github/email_reply_parser hides them (the corpus README notes the two upstreams disagree)',
  },
  'github-email_reply_parser/test/emails/email_sent_from_my_not_signature.txt': {
    visibleText: 'crisp-oss treats any "Sent from …" line as a device signature; github keeps "Sent from my desk, …"',
  },
  'crisp-oss-email-reply-parser/test/fixtures/email_1.txt': {
    visibleText: 'exact compare includes trailing blank lines; we trim the display text',
  },
  'crisp-oss-email-reply-parser/test/fixtures/email_sent_from.txt': {
    visibleText: 'exact compare includes a trailing newline; we trim the display text',
  },
  'mailgun-talon/tests/fixtures/reply-separated-by-hr.html': {
    visibleText:
      'talon drops the sign-off line "Bob" that shares a <div> with the <hr>; we cut at the <hr> and keep what the sender wrote above it',
  },
  'mailgun-talon/tests/fixtures/standard_replies/iphone.eml': {
    visibleText: 'we hide device signatures ("Sent from my iPhone"); talon keeps them',
  },
  'mailgun-talon/tests/fixtures/standard_replies/sparrow.eml': { visibleText: 'we hide the "-- " signature block; talon keeps it' },
  'mailgun-talon/tests/fixtures/standard_replies/thunderbird.eml': {
    visibleText:
      'format=flowed: mailparser joins the quoted "> Hi " (soft break) with the following unquoted "Hello" line, so the reply cannot be separated from the quote',
  },
  'mikel-mail/spec/fixtures/emails/rfc2822/example14.eml': {
    subject: 'mailparser unfolds the folded subject to a space where the mail gem keeps the tab (" \\t")',
  },
  'mikel-mail/spec/fixtures/emails/error_emails/must_supply_encoding.eml': {
    replacementCharacter: "the raw header bytes are EF BF BD: the sender's own U+FFFD, there is no other reading",
  },
  'mikel-mail/spec/fixtures/emails/rfc2822/example10.eml': {
    toAddresses:
      'obsolete syntax with a comment inside the address (`c@(Chris\'s host.)public.example`): mailparser reads the address as "c@(Chris\'s", which is no address, so it is dropped',
  },
  'mikel-mail/spec/fixtures/emails/rfc6532/utf8_headers.eml': {
    fromName:
      'internationalised (SMTPUTF8) addresses such as jdöe@mächine.example are not valid addresses for us (ASCII only): held as invalid_sender, so no sender name',
    toAddresses: 'same: märy@exämple.net is not a valid address for us',
  },
  'mikel-mail/spec/fixtures/emails/error_emails/multiple_references_with_one_invalid.eml': {
    references:
      'we keep every well-formed id from all References headers (more threading evidence); the mail gem keeps only the first header',
  },
};

function allowed(e: Entry, key: string): boolean {
  return Boolean(ALLOWLIST[e.path]?.[key]);
}

function sameText(actual: string, expected: string, mode: string | undefined): boolean {
  const a = actual.replace(/\r\n/g, '\n');
  const b = expected.replace(/\r\n/g, '\n');
  switch (mode) {
    case 'exact':
      return a === b;
    case 'trimLines': {
      const f = (s: string) =>
        s
          .split('\n')
          .map((l) => l.trimEnd())
          .join('\n')
          .trim();
      return f(a) === f(b);
    }
    case 'ignoreWhitespace':
      return a.replace(/\s/g, '') === b.replace(/\s/g, '');
    default:
      return a.trim() === b.trim();
  }
}

/** Every failed expectation of one entry, as "key: why" lines (allowlisted keys skipped). */
function visibleTextProblems(e: Entry, visible: string): string[] {
  const x = e.expect;
  const out: string[] = [];
  if (x.visibleText !== undefined && !allowed(e, 'visibleText') && !sameText(visible, x.visibleText, x.visibleTextCompare)) {
    out.push(`visibleText: got ${JSON.stringify(visible.slice(0, 300))}`);
  }
  if (x.visibleTextStartsWith && !visible.startsWith(x.visibleTextStartsWith)) out.push('visibleTextStartsWith');
  for (const c of x.visibleTextContains ?? []) if (!visible.includes(c)) out.push(`visibleTextContains ${c}`);
  return out;
}

const OPTS = {
  envelopeFrom: 'sender@corpus.example',
  mailDomain: 'help.test',
  loopHeader: LOOP_HEADER,
  attachmentMaxBytes: 20 * 1024 * 1024,
};

function headerProblems(e: Entry, a: AnalyzedMessage): string[] {
  const x = e.expect;
  const out: string[] = [];
  const check = (key: string, ok: boolean, got: unknown) => {
    if (!ok && !allowed(e, key)) out.push(`${key}: got ${JSON.stringify(got)}, upstream ${JSON.stringify(x[key])}`);
  };
  if (x.subject !== undefined)
    check('subject', x.subjectCompare === 'exact' ? a.subject === x.subject : a.subject.trim() === x.subject.trim(), a.subject);
  if (x.fromAddress !== undefined)
    check('fromAddress', a.fromHeaderAddress?.toLowerCase() === x.fromAddress.toLowerCase(), a.fromHeaderAddress);
  if (x.messageId !== undefined) check('messageId', a.messageId === x.messageId, a.messageId);
  if (x.inReplyTo !== undefined) check('inReplyTo', JSON.stringify(a.inReplyTo) === JSON.stringify([...new Set(x.inReplyTo)]), a.inReplyTo);
  if (x.references !== undefined)
    check('references', JSON.stringify(a.references) === JSON.stringify([...new Set(x.references)]), a.references);
  if (x.isBounce !== undefined) check('isBounce', (a.machine?.kind === 'bounce') === x.isBounce, a.machine);
  if (x.isDeliveryStatusReport !== undefined)
    check('isDeliveryStatusReport', /delivery-status/.test(a.machine?.rule ?? '') === x.isDeliveryStatusReport, a.machine);
  if (x.isAutoReply !== undefined) check('isAutoReply', (a.machine !== null) === x.isAutoReply, a.machine);
  if (x.fromName !== undefined) check('fromName', (a.from?.name ?? '') === x.fromName, a.from?.name);
  const addresses = (list: { address: string }[]) => JSON.stringify(list.map((m) => m.address));
  const lower = (list: string[]) => JSON.stringify(list.map((s) => s.toLowerCase()));
  if (x.toAddresses !== undefined) check('toAddresses', addresses(a.to) === lower(x.toAddresses), a.to);
  if (x.ccAddresses !== undefined) check('ccAddresses', addresses(a.cc) === lower(x.ccAddresses), a.cc);
  const files = [...a.attachments.map((f) => f.filename), ...a.omittedAttachments.map((f) => f.filename)];
  if (x.attachmentCount !== undefined) check('attachmentCount', files.length === x.attachmentCount, files);
  if (x.attachmentNames !== undefined) check('attachmentNames', JSON.stringify(files) === JSON.stringify(x.attachmentNames), files);
  if (x.dsn !== undefined) {
    const r = a.dsn?.recipients[0];
    const got = r && {
      action: r.action,
      status: r.status,
      finalRecipient: r.finalRecipient,
      diagnosticCode: r.diagnosticCode,
      remoteMta: r.remoteMta,
      retryable: !a.dsn!.permanent,
    };
    // RFC 3464 fields carry a type ("RFC822;", "SMTP;", "DNS;"): we store the value after it.
    const want = Object.fromEntries(Object.entries(x.dsn).map(([k, v]) => [k, typeof v === 'string' ? v.replace(/^[\w-]+;\s*/, '') : v]));
    check('dsn', JSON.stringify(got) === JSON.stringify(want), got);
  }
  return out;
}

const byFormat = (f: Entry['format']) => manifest.filter((e) => e.format === f);

describe('corpus: text bodies through the reply stripper', () => {
  it.each(byFormat('text-body').map((e) => [e.path, e] as const))('%s', (_p, e) => {
    expect(visibleTextProblems(e, visibleReplyText(read(e).toString('utf8')))).toEqual([]);
  });
});

describe('corpus: HTML bodies through the quote splitter and sanitiser', () => {
  it.each(byFormat('html-body').map((e) => [e.path, e] as const))('%s', (_p, e) => {
    const html = read(e).toString('utf8');
    const split = splitHtmlQuote(html);
    expect(visibleTextProblems(e, split.visibleText)).toEqual([]);
    const safe = sanitizeMailHtml(split.visibleHtml);
    expect(safe).not.toMatch(/<script|<style|\son[a-z]+=/i);
  });
});

describe('corpus: rfc822 messages, parsed', () => {
  it.each(byFormat('rfc822').map((e) => [e.path, e] as const))('%s', async (_p, e) => {
    const a = await analyzeMessage(read(e), OPTS);
    expect([...headerProblems(e, a), ...visibleTextProblems(e, a.visibleText)]).toEqual([]);
    // No U+FFFD where a correct reading exists (charset-repair.ts): subject, names, text and file names.
    const texts = [a.subject, a.from?.name ?? '', ...a.to.map((m) => m.name), a.text, ...a.attachments.map((f) => f.filename)];
    if (!allowed(e, 'replacementCharacter')) expect(texts.filter((t) => t.includes('\ufffd')).map((t) => t.slice(0, 120))).toEqual([]);
  });
});

describe('corpus: every message through the pipeline (and a sample through real SMTP)', () => {
  let app: TestApp;
  beforeAll(async () => {
    // No worker role: this test drives the pipeline itself, so it knows exactly which run did what.
    app = await startTestApp({ REPLYLINE_ROLES: 'smtp', SENDER_BREAKER_MAX: '100000' });
  });
  afterAll(() => app.teardown());

  it(
    'every rfc822 entry is processed (ticket or held with a reason); machine mail never becomes a ticket',
    { timeout: 120_000 },
    async () => {
      const problems: string[] = [];
      for (const e of byFormat('rfc822')) {
        const id = await insertInboundMessage(app.ctx.db, read(e), {
          mailFrom: 'sender@corpus.example',
          rcptTo: ['support@help.test'],
          clientAddress: '127.0.0.1',
          helo: 'corpus',
          tls: false,
        });
        const r = await processInboundMessage(app.ctx, id);
        if (r.status === 'skipped') problems.push(`${e.path}: skipped`);
        if (r.status === 'held' && r.reason === 'parse_failed') problems.push(`${e.path}: parse_failed`);
        const machine = e.expect.isBounce || e.expect.isDeliveryStatusReport || e.expect.isAutoReply;
        if (machine && r.status === 'processed' && r.reason !== 'duplicate')
          problems.push(`${e.path}: machine mail became ticket ${r.ticketId}`);
      }
      expect(problems).toEqual([]);
    },
  );

  it("the ReDoS stress bodies parse within upstream's maxParseMs, enforced by our own CPU guard set to that limit", async () => {
    const stress = manifest.filter((x) => x.expect.maxParseMs);
    expect(stress.length).toBeGreaterThan(0);
    for (const e of stress) {
      const raw = Buffer.concat([
        Buffer.from('From: stress@corpus.example\r\nSubject: stress\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n'),
        read(e),
      ]);
      const id = await insertInboundMessage(app.ctx.db, raw, {
        mailFrom: 'stress@corpus.example',
        rcptTo: ['support@help.test'],
        clientAddress: '127.0.0.1',
        helo: 'corpus',
        tls: false,
      });
      // The parse pool stops a parse that uses more CPU than INBOUND_PARSE_TIMEOUT_MS and holds it as parse_failed.
      const strict = { ...app.ctx, config: { ...app.ctx.config, INBOUND_PARSE_TIMEOUT_MS: e.expect.maxParseMs! } };
      const r = await processInboundMessage(strict, id);
      expect(r.reason, e.path).not.toBe('parse_failed');
    }
  });

  it('a sample (Japanese, bounces, auto-replies, malformed, attachments) is accepted over SMTP with 250 and processed', async () => {
    const sample = manifest
      .filter((e) => e.format === 'rfc822' && ['charset', 'bounce', 'auto-reply', 'malformed', 'attachment'].includes(e.kind))
      .filter((_e, i) => i % 3 === 0);
    expect(sample.length).toBeGreaterThan(10);
    for (const e of sample) {
      const response = await sendOnce(app.smtp!.port, { from: 'sender@corpus.example', to: ['support@help.test'] }, read(e));
      expect(response, e.path).toMatch(/^250 /);
      const id = queuedId(response);
      const stored = await app.ctx.db.selectFrom('inbound_messages').select('size').where('id', '=', id).executeTakeFirstOrThrow();
      expect(stored.size).toBeGreaterThan(0);
      await processInboundMessage(app.ctx, id);
      expect(['processed', 'held']).toContain((await waitProcessed(app.ctx.db, id)).status);
    }
  });
});
