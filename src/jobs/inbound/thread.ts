import type { Config } from '../../config.js';
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

/** What the database knows about a message's thread evidence (gather-facts.ts reads it for the whole batch). */
export interface ThreadFacts {
  /** Which of the evidence's ticket ids exist. */
  existing: ReadonlySet<number>;
  /** The evidence's tickets the sender takes part in. */
  takesPart: ReadonlySet<number>;
  /** The stored Message-ID match of In-Reply-To/References (tickets.ts findTicketsByMessageIds). */
  stored: { ticketId: number; tied: boolean } | null;
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

/** In-Reply-To names the direct parent; References newest last. */
export function referencedIds(a: Pick<AnalyzedMessage, 'inReplyTo' | 'references'>): string[] {
  return [...a.inReplyTo, ...[...a.references].reverse()];
}

/** Every ticket id the message's signed evidence names (reply addresses, our Message-IDs, body tags): whose existence matters. */
export function evidenceTicketIds(config: ThreadConfig, a: AnalyzedMessage, rcptTo: string[]): number[] {
  const ids = replyTokens(config, a, rcptTo).map((t) => t.ticketId);
  for (const id of referencedIds(a)) {
    const ours = parseOurMessageId(config.SECRET_KEY, config.MAIL_DOMAIN, id);
    if (ours) ids.push(ours.ticketId);
  }
  ids.push(...findTicketTags(config.SECRET_KEY, a.text));
  return [...new Set(ids)];
}

/** The body tags' tickets: whether the sender takes part in them ties the evidence. */
export function tagTicketIds(config: ThreadConfig, a: AnalyzedMessage): number[] {
  return findTicketTags(config.SECRET_KEY, a.text);
}

/** The thread a message continues, from the facts: pure, the same answer for gathering (which tickets to lock) and deciding. */
export function matchThread(
  config: ThreadConfig,
  a: AnalyzedMessage,
  rcptTo: string[],
  senderId: number | null,
  facts: ThreadFacts,
): ThreadResult {
  const exists = (id: number) => id > 0 && facts.existing.has(id);
  const tokens = replyTokens(config, a, rcptTo);
  // The sender's own reply address first; another user's only as untied evidence.
  const ordered = [...tokens.filter((t) => t.userId === senderId), ...tokens.filter((t) => t.userId !== senderId)];
  let untied: ThreadMatch | null = null;
  for (const t of ordered) {
    if (!exists(t.ticketId)) continue;
    if (t.userId === senderId) return { match: { ticketId: t.ticketId, evidence: 'reply_address', tied: true }, token: t };
    untied ??= { ticketId: t.ticketId, evidence: 'reply_address', tied: false };
    break;
  }
  const token = ordered[0] ?? null;

  const stored = facts.stored;
  if (stored?.tied) return { match: { ticketId: stored.ticketId, evidence: 'message_id', tied: true }, token };
  if (stored) untied ??= { ticketId: stored.ticketId, evidence: 'message_id', tied: false };
  for (const id of referencedIds(a)) {
    // Our signed id whose outbound row is gone: the ticket is known, the recipient is not.
    const ours = parseOurMessageId(config.SECRET_KEY, config.MAIL_DOMAIN, id);
    if (ours && exists(ours.ticketId)) {
      untied ??= { ticketId: ours.ticketId, evidence: 'message_id', tied: false };
      break;
    }
  }

  // The tag is per ticket, not per person: it ties only a sender who takes part in that ticket.
  for (const ticketId of findTicketTags(config.SECRET_KEY, a.text)) {
    if (!exists(ticketId)) continue;
    if (facts.takesPart.has(ticketId)) return { match: { ticketId, evidence: 'body_tag', tied: true }, token };
    untied ??= { ticketId, evidence: 'body_tag', tied: false };
  }
  return { match: untied, token };
}
