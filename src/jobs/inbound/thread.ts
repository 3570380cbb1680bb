import type { Config } from '../../config.js';
import type { Db } from '../../db/database.js';
import { findTicketByMessageIds } from '../../db/queries/tickets.js';
import { findTicketTags, parseOurMessageId, parseReplyAddress, type ReplyToken } from '../../mail/tokens.js';
import type { AnalyzedMessage } from './analyze.js';

/**
 * Which existing ticket a message continues, by the strongest evidence
 * first: a signed reply address among the recipients (To, Cc, or the SMTP
 * envelope when a client dropped the headers), then In-Reply-To/References,
 * then a signed tag in the body. A bare "#123" in the subject proves
 * nothing and is never used.
 *
 * Evidence counts for the sender only when it is tied to them: a reply
 * address issued to that user, a Message-ID we mailed to that address (or a
 * stored one of theirs or of a ticket they take part in), a body tag of a
 * ticket they take part in. Untied evidence (someone else's reply address, a
 * forwarded acknowledgement) is reported as such and never grants anything.
 */
export type ThreadEvidence = 'reply_address' | 'message_id' | 'body_tag';

export interface ThreadMatch {
  ticketId: number;
  evidence: ThreadEvidence;
  /** The evidence was issued to (or concerns) this very sender. */
  tied: boolean;
}

export interface ThreadResult {
  match: ThreadMatch | null;
  /** The first validly signed reply token among the recipients (staff auth uses it). */
  token: ReplyToken | null;
}

type ThreadConfig = Pick<Config, 'SECRET_KEY' | 'MAIL_DOMAIN'>;
export interface ThreadSender {
  id: number;
  email: string;
}

async function ticketExists(db: Db, id: number): Promise<boolean> {
  if (id <= 0) return false;
  return Boolean(await db.selectFrom('tickets').select('id').where('id', '=', id).executeTakeFirst());
}

export function replyTokens(config: ThreadConfig, a: Pick<AnalyzedMessage, 'to' | 'cc'>, rcptTo: string[]): ReplyToken[] {
  const addresses = [...a.to.map((m) => m.address), ...a.cc.map((m) => m.address), ...rcptTo];
  const tokens: ReplyToken[] = [];
  for (const address of addresses) {
    const t = parseReplyAddress(config.SECRET_KEY, config.MAIL_DOMAIN, address);
    if (t && !tokens.some((x) => x.ticketId === t.ticketId && x.userId === t.userId)) tokens.push(t);
  }
  return tokens;
}

async function takesPart(db: Db, ticketId: number, userId: number): Promise<boolean> {
  return Boolean(
    await db
      .selectFrom('ticket_participants')
      .select('user_id')
      .where('ticket_id', '=', ticketId)
      .where('user_id', '=', userId)
      .executeTakeFirst(),
  );
}

export async function findThread(
  db: Db,
  config: ThreadConfig,
  a: AnalyzedMessage,
  rcptTo: string[],
  sender: ThreadSender,
): Promise<ThreadResult> {
  const tokens = replyTokens(config, a, rcptTo);
  // The sender's own reply address first; another user's only as untied evidence.
  const ordered = [...tokens.filter((t) => t.userId === sender.id), ...tokens.filter((t) => t.userId !== sender.id)];
  let untied: ThreadMatch | null = null;
  for (const t of ordered) {
    if (!(await ticketExists(db, t.ticketId))) continue;
    if (t.userId === sender.id) return { match: { ticketId: t.ticketId, evidence: 'reply_address', tied: true }, token: t };
    untied ??= { ticketId: t.ticketId, evidence: 'reply_address', tied: false };
    break;
  }
  const token = ordered[0] ?? null;

  // In-Reply-To names the direct parent; References newest last.
  const ids = [...a.inReplyTo, ...[...a.references].reverse()];
  const stored = await findTicketByMessageIds(db, ids, sender);
  if (stored?.tied) return { match: { ticketId: stored.ticketId, evidence: 'message_id', tied: true }, token };
  if (stored) untied ??= { ticketId: stored.ticketId, evidence: 'message_id', tied: false };
  for (const id of ids) {
    // Our signed id whose outbound row is gone: the ticket is known, the recipient is not.
    const ours = parseOurMessageId(config.SECRET_KEY, config.MAIL_DOMAIN, id);
    if (ours && (await ticketExists(db, ours.ticketId))) {
      untied ??= { ticketId: ours.ticketId, evidence: 'message_id', tied: false };
      break;
    }
  }

  // The tag is per ticket, not per person: it ties only a sender who takes part in that ticket.
  for (const ticketId of findTicketTags(config.SECRET_KEY, a.text)) {
    if (!(await ticketExists(db, ticketId))) continue;
    if (await takesPart(db, ticketId, sender.id)) return { match: { ticketId, evidence: 'body_tag', tied: true }, token };
    untied ??= { ticketId, evidence: 'body_tag', tied: false };
  }
  return { match: untied, token };
}
