import type { Config } from '../../config.js';
import type { Db } from '../../db/database.js';
import { findTicketIdByMessageIds } from '../../db/queries/tickets.js';
import { findTicketTags, parseOurMessageId, parseReplyAddress, type ReplyToken } from '../../mail/tokens.js';
import type { AnalyzedMessage } from './analyze.js';

/**
 * Which existing ticket a message continues, by the strongest evidence
 * first: a signed reply address among the recipients (To, Cc, or the SMTP
 * envelope when a client dropped the headers), then In-Reply-To/References,
 * then a signed tag in the body. A bare "#123" in the subject proves
 * nothing and is never used.
 */
export type ThreadEvidence = 'reply_address' | 'message_id' | 'body_tag';

export interface ThreadMatch {
  ticketId: number;
  evidence: ThreadEvidence;
}

export interface ThreadResult {
  match: ThreadMatch | null;
  /** The first validly signed reply token among the recipients (staff auth uses it). */
  token: ReplyToken | null;
}

type ThreadConfig = Pick<Config, 'SECRET_KEY' | 'MAIL_DOMAIN'>;

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

export async function findThread(db: Db, config: ThreadConfig, a: AnalyzedMessage, rcptTo: string[]): Promise<ThreadResult> {
  const tokens = replyTokens(config, a, rcptTo);
  for (const t of tokens) {
    if (await ticketExists(db, t.ticketId)) return { match: { ticketId: t.ticketId, evidence: 'reply_address' }, token: t };
  }
  const token = tokens[0] ?? null;

  // In-Reply-To names the direct parent; References newest last.
  const ids = [...a.inReplyTo, ...[...a.references].reverse()];
  for (const id of ids) {
    const ours = parseOurMessageId(config.SECRET_KEY, config.MAIL_DOMAIN, id);
    if (ours && (await ticketExists(db, ours.ticketId))) return { match: { ticketId: ours.ticketId, evidence: 'message_id' }, token };
  }
  const stored = await findTicketIdByMessageIds(db, ids);
  if (stored !== null) return { match: { ticketId: stored, evidence: 'message_id' }, token };

  for (const ticketId of findTicketTags(config.SECRET_KEY, a.text)) {
    if (await ticketExists(db, ticketId)) return { match: { ticketId, evidence: 'body_tag' }, token };
  }
  return { match: null, token };
}
