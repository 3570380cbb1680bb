import { createHash } from 'node:crypto';
import { simpleParser, type Attachment, type ParsedMail } from 'mailparser';
import type { SenderAuth } from '../../mail/sender-auth.js';
import { bareMessageId } from '../../core/message-id.js';
import type { Mailbox } from '../../core/address.js';
import { checkedMailboxes, firstWrittenAddress } from './addresses.js';
import { sanitizeFilename } from '../../mail/filename.js';
import { repairCharsets } from './charset-repair.js';
import {
  classifyMachineMail,
  isPermanentFailure,
  messageIdsInHeaders,
  parseDeliveryStatus,
  type DsnReport,
  type HeaderIndex,
  type MachineVerdict,
} from './classify.js';
import { htmlToPlainText, sanitizeMailHtml, splitHtmlQuote } from './html-content.js';
import { visibleReplyText } from './text-content.js';

/**
 * Everything the pipeline needs from one raw message, computed from the
 * bytes alone. Runs inside the parse worker (see parse-pool.ts): it is the
 * CPU-heavy, attacker-controlled part, so it must never touch the database
 * and its result must survive structured cloning.
 */

export interface AnalyzedAttachment {
  filename: string;
  contentType: string;
  content: Uint8Array;
  size: number;
  sha256: string;
  contentId: string | null;
  inline: boolean;
}

export interface OmittedAttachment {
  filename: string;
  size: number;
}

export interface AnalyzedMessage {
  messageId: string | null;
  inReplyTo: string[];
  references: string[];
  subject: string;
  from: Mailbox | null;
  /** The From header had something, but not one valid address. */
  fromInvalid: boolean;
  /** The first From address as written, valid or not (for the held listing). */
  fromHeaderAddress: string | null;
  to: Mailbox[];
  cc: Mailbox[];
  /** Full text (text part, or the HTML's text when there is none). */
  text: string;
  /** Display text: quoted history and signature removed. */
  visibleText: string;
  /** Sanitised HTML without quoted history, and the sanitised full HTML. */
  visibleHtml: string | null;
  originalHtml: string | null;
  attachments: AnalyzedAttachment[];
  omittedAttachments: OmittedAttachment[];
  machine: MachineVerdict | null;
  dsn: DsnReport | null;
  /** Body text suggests Japanese: new implicit accounts get the ja locale. */
  japanese: boolean;
  sha256: string;
  /**
   * SPF/DKIM/DMARC verdict for `from`, filled in by the pipeline on the main
   * thread after parsing (it needs DNS, which neither the parse worker nor a
   * transaction may do). Absent: not computed, which counts as unauthenticated.
   */
  senderAuth?: SenderAuth | null;
}

export interface AnalyzeOptions {
  envelopeFrom: string;
  mailDomain: string;
  loopHeader: string;
  attachmentMaxBytes: number;
}

const bareId = bareMessageId;
/** PostgreSQL text cannot hold NUL; a sender can put one anywhere. */
const noNul = (s: string) => (s.includes('\0') ? s.replace(/\0/g, '') : s);
/** Longer ids cannot be indexed (and no real client writes them): treat as absent. */
const MAX_ID = 500;

function idList(value: string | string[] | undefined): string[] {
  if (!value) return [];
  const joined = Array.isArray(value) ? value.join(' ') : value;
  const ids = [...joined.matchAll(/<([^<>\s]+)>/g)].map((m) => m[1]!);
  // Some clients write ids without brackets.
  const list = ids.length ? ids : joined.split(/[\s,]+/).filter((s) => s.includes('@'));
  return [...new Set(list.map((id) => noNul(bareId(id))).filter((id) => id !== '' && id.length <= MAX_ID))].slice(0, 100);
}

/** Raw header lines by lower-cased name, values unfolded. */
function headerIndex(parsed: ParsedMail): HeaderIndex {
  const index: HeaderIndex = {};
  for (const { key, line } of parsed.headerLines ?? []) {
    const value = line
      .slice(line.indexOf(':') + 1)
      .replace(/\r?\n[ \t]+/g, ' ')
      .trim();
    (index[key] ??= []).push(value);
  }
  return index;
}

function dsnReport(parsed: ParsedMail): DsnReport | null {
  const statusParts = parsed.attachments.filter((a) => /^message\/(global-)?delivery-status$/i.test(a.contentType));
  if (statusParts.length === 0) return null;
  const recipients = statusParts.flatMap((a) => parseDeliveryStatus(noNul(a.content.toString('utf8'))));
  const returned = parsed.attachments.filter((a) =>
    /^(message\/(global|rfc822)|text\/rfc822-headers|message\/global-headers)$/i.test(a.contentType),
  );
  const originalMessageIds = [...new Set(returned.flatMap((a) => messageIdsInHeaders(noNul(a.content.toString('utf8')))))];
  return { recipients, originalMessageIds, permanent: recipients.some(isPermanentFailure) };
}

/** DSN machinery parts are the report itself, not customer files. */
const REPORT_PART =
  /^(message\/(global-)?delivery-status|message\/(global-)?disposition-notification|text\/rfc822-headers|message\/global-headers)$/i;
/** Alternative renderings of the body (Apple Watch, AMP): never files a person attached. */
const ALTERNATIVE_BODY = /^text\/(watch-html|x-amp-html)$/i;

function attachments(list: Attachment[], maxBytes: number) {
  const kept: AnalyzedAttachment[] = [];
  const omitted: OmittedAttachment[] = [];
  list.forEach((a, i) => {
    if (REPORT_PART.test(a.contentType) || ALTERNATIVE_BODY.test(a.contentType)) return;
    const filename = sanitizeFilename(a.filename, a.contentType, i + 1);
    if (a.size > maxBytes || a.content.length > maxBytes) {
      omitted.push({ filename, size: a.content.length });
      return;
    }
    kept.push({
      filename,
      contentType:
        a.contentType
          .toLowerCase()
          .replace(/[^\w.+/-]/g, '')
          .slice(0, 100) || 'application/octet-stream',
      content: new Uint8Array(a.content.buffer, a.content.byteOffset, a.content.byteLength),
      size: a.content.length,
      sha256: createHash('sha256').update(a.content).digest('hex'),
      contentId: a.cid ? bareId(a.cid).slice(0, 250) : null,
      inline: a.contentDisposition === 'inline' && Boolean(a.cid),
    });
  });
  return { kept, omitted };
}

const JAPANESE = /[\u3040-\u309f\u30a0-\u30ff]/;

export async function analyzeMessage(raw: Buffer, opts: AnalyzeOptions): Promise<AnalyzedMessage> {
  // Missing or wrong charset labels are fixed before mailparser reads the bytes (charset-repair.ts).
  const parsed = await simpleParser(repairCharsets(raw), {
    skipImageLinks: true,
    keepDeliveryStatus: true,
    skipTextToHtml: true,
    skipTextLinks: true,
    skipHtmlToText: true,
  });
  const headers = headerIndex(parsed);
  // Only addresses literally in the header, each with its own name (addresses.ts).
  const fromList = checkedMailboxes(parsed.from, headers.from);
  const from = fromList[0] ?? null;
  const rawId = parsed.messageId ? noNul(bareId(parsed.messageId)) : '';
  const messageId = rawId !== '' && rawId.length <= MAX_ID ? rawId : null;
  const subject = (parsed.subject ?? '')
    .replace(/[\r\n\0]+/g, ' ')
    .trim()
    .slice(0, 998);

  const htmlSource = typeof parsed.html === 'string' && parsed.html.trim() !== '' ? noNul(parsed.html) : null;
  const split = htmlSource ? splitHtmlQuote(htmlSource) : null;
  const hasTextPart = typeof parsed.text === 'string' && parsed.text.trim() !== '';
  const text = noNul(hasTextPart ? parsed.text! : (split?.fullText ?? (htmlSource ? htmlToPlainText(htmlSource) : '')));
  const visibleText = hasTextPart ? visibleReplyText(text) : split ? visibleReplyText(split.visibleText) : '';

  const contentType = parsed.headers.get('content-type') as { value?: string; params?: Record<string, string> } | undefined;
  const dsn = dsnReport(parsed);
  const machine = classifyMachineMail({
    headers,
    envelopeFrom: opts.envelopeFrom,
    fromAddress: from?.address ?? null,
    messageId,
    contentType: (contentType?.value ?? 'text/plain').toLowerCase(),
    reportType: contentType?.params?.['report-type'] ?? null,
    dsn,
    subject,
    mailDomain: opts.mailDomain,
    loopHeader: opts.loopHeader,
  });
  const { kept, omitted } = attachments(parsed.attachments, opts.attachmentMaxBytes);

  return {
    messageId,
    inReplyTo: idList(parsed.inReplyTo),
    references: idList(parsed.references),
    subject,
    from,
    fromInvalid: !from && Boolean(headers.from?.[0]),
    fromHeaderAddress: firstWrittenAddress(headers.from),
    to: checkedMailboxes(parsed.to, headers.to),
    cc: checkedMailboxes(parsed.cc, headers.cc),
    text,
    visibleText,
    visibleHtml: split ? sanitizeMailHtml(split.visibleHtml) : null,
    originalHtml: htmlSource ? sanitizeMailHtml(htmlSource) : null,
    attachments: kept,
    omittedAttachments: omitted,
    machine,
    dsn,
    japanese: JAPANESE.test(subject) || JAPANESE.test(visibleText),
    sha256: createHash('sha256').update(raw).digest('hex'),
  };
}
