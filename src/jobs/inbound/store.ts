import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { Config } from '../../config.js';
import type { Db, InboundMessageRow } from '../../db/database.js';
import { addAttachment, addMessage, addParticipant, storedMessageId } from '../../db/queries/tickets.js';
import { ensureUser } from '../../db/queries/users.js';
import { isOurAddress } from '../../core/address.js';
import type { AnalyzedMessage } from './analyze.js';

/**
 * Writing what a message brings to a ticket: its CCs as participants and the
 * message itself with its attachments. Called inside the pipeline's transaction.
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

export async function newCcs(trx: Db, ticketId: number | null, candidates: { email: string; name: string }[]) {
  if (ticketId === null || candidates.length === 0) return candidates;
  const rows = await trx
    .selectFrom('ticket_participants as p')
    .innerJoin('users as u', 'u.id', 'p.user_id')
    .select('u.email')
    .where('p.ticket_id', '=', ticketId)
    .where(
      sql<string>`lower(u.email)`,
      'in',
      candidates.map((c) => c.email),
    )
    .execute();
  const existing = new Set(rows.map((r) => r.email.toLowerCase()));
  return candidates.filter((c) => !existing.has(c.email));
}

export async function addCcs(trx: Db, cfg: Cfg, ticketId: number, ccs: { email: string; name: string }[]): Promise<void> {
  for (const cc of ccs) {
    const { user } = await ensureUser(trx, { email: cc.email, name: cc.name || null, locale: cfg.DEFAULT_LOCALE });
    await addParticipant(trx, ticketId, user.id, 'cc');
  }
}

function omittedNote(a: AnalyzedMessage): string {
  if (a.omittedAttachments.length === 0) return '';
  const lines = a.omittedAttachments.map(
    (o) => `[attachment "${o.filename}" (${o.size} bytes) exceeds the size limit and was not stored; the original message is kept]`,
  );
  return `\n\n${lines.join('\n')}`;
}

async function storeAttachments(trx: Db, messageId: number, a: AnalyzedMessage): Promise<void> {
  for (const att of a.attachments) {
    const content = Buffer.from(att.content.buffer, att.content.byteOffset, att.content.byteLength);
    await addAttachment(trx, {
      messageId,
      filename: att.filename,
      contentType: att.contentType,
      content,
      sha256: att.sha256 || createHash('sha256').update(content).digest('hex'),
      contentId: att.contentId,
      inline: att.inline,
    });
  }
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
  await storeAttachments(trx, message.id, a);
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

/**
 * A new ticket, its requester and its first message in one statement (the
 * same rows createTicket + addMessage write, minus three round trips on the
 * path every first mail takes).
 */
export async function createTicketWithMessage(
  trx: Db,
  row: StoredRow,
  a: AnalyzedMessage,
  t: { requesterId: number; followUpOf: number | null },
): Promise<{ ticketId: number; messageId: number }> {
  const m = firstMessageFields(a);
  const { rows } = await sql<{ ticket_id: number; id: number }>`
    WITH t AS (
      INSERT INTO tickets (subject, requester_id, via, follow_up_of, status, updated_at)
      VALUES (${a.subject}, ${t.requesterId}, 'email', ${t.followUpOf}, 'new', now())
      RETURNING id
    ), p AS (
      INSERT INTO ticket_participants (ticket_id, user_id, role) SELECT id, ${t.requesterId}, 'requester' FROM t
    )
    INSERT INTO messages (ticket_id, author_id, visibility, via, body_text, body_html, original_text, original_html, message_id, inbound_message_id)
    SELECT id, ${t.requesterId}, 'public', 'email', ${m.bodyText}, ${m.bodyHtml}, ${m.originalText}, ${m.originalHtml}, ${m.messageId}, ${row.id} FROM t
    RETURNING ticket_id, id
  `.execute(trx);
  const r = rows[0]!;
  await storeAttachments(trx, r.id, a);
  return { ticketId: r.ticket_id, messageId: r.id };
}
