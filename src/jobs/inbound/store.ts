import { createHash } from 'node:crypto';
import type { Config } from '../../config.js';
import type { Db, InboundMessageRow } from '../../db/database.js';
import { addAttachments, type NewAttachment } from '../../db/queries/attachments.js';
import { addMessage, storedMessageId } from '../../db/queries/messages.js';
import { isOurAddress } from '../../core/address.js';
import type { AnalyzedMessage } from './analyze.js';

/**
 * What a message brings to a ticket: its CC candidates, and the message
 * itself with its attachments (apply-plans.ts writes them).
 */

type Cfg = Pick<Config, 'SUPPORT_ADDRESSES' | 'MAIL_DOMAIN' | 'DEFAULT_LOCALE'>;
type StoredRow = Pick<InboundMessageRow, 'id'>;

export function ccCandidates(cfg: Cfg, a: AnalyzedMessage, senderEmail: string): { email: string; name: string }[] {
  const seen = new Set<string>([senderEmail]);
  const out: { email: string; name: string }[] = [];
  for (const m of [...a.to, ...a.cc]) {
    if (seen.has(m.address)) continue;
    seen.add(m.address);
    // Our own addresses never become participants: they would mail themselves.
    // A colleague's mailbox on MAIL_DOMAIN is not ours (the one rule, core/address.ts).
    if (isOurAddress(cfg, m.address)) continue;
    out.push({ email: m.address, name: m.name });
  }
  return out;
}

function omittedNote(a: AnalyzedMessage): string {
  if (a.omittedAttachments.length === 0) return '';
  const lines = a.omittedAttachments.map(
    (o) => `[attachment "${o.filename}" (${o.size} bytes) exceeds the size limit and was not stored; the original message is kept]`,
  );
  return `\n\n${lines.join('\n')}`;
}

/** The attachment rows of a stored message. */
export function attachmentRows(messageId: number, a: AnalyzedMessage): NewAttachment[] {
  return a.attachments.map((att) => {
    const content = Buffer.from(att.content.buffer, att.content.byteOffset, att.content.byteLength);
    return {
      messageId,
      filename: att.filename,
      contentType: att.contentType,
      content,
      sha256: att.sha256 || createHash('sha256').update(content).digest('hex'),
      contentId: att.contentId,
      inline: att.inline,
    };
  });
}

export async function storeMessage(
  trx: Db,
  row: StoredRow,
  a: AnalyzedMessage,
  m: { ticketId: number; authorId: number; visibility: 'public' | 'internal'; bodyText?: string; bodyHtml?: string | null },
) {
  const message = await addMessage(trx, {
    ticketId: m.ticketId,
    authorId: m.authorId,
    visibility: m.visibility,
    via: 'email',
    bodyText: (m.bodyText ?? a.visibleText) + omittedNote(a),
    bodyHtml: m.bodyHtml === undefined ? a.visibleHtml : m.bodyHtml,
    originalText: a.text,
    originalHtml: a.originalHtml,
    messageId: a.messageId,
    inboundMessageId: row.id,
  });
  await addAttachments(trx, attachmentRows(message.id, a));
  return message;
}

/** The columns of a ticket's first message, as the email brought them. */
export function firstMessageFields(a: AnalyzedMessage) {
  return {
    bodyText: a.visibleText + omittedNote(a),
    bodyHtml: a.visibleHtml,
    originalText: a.text,
    originalHtml: a.originalHtml,
    messageId: a.messageId ? storedMessageId(a.messageId) : null,
  };
}
