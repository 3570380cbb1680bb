import type { Config } from '../../config.js';
import type { Db } from '../../db/database.js';
import { claimInboundFacts } from '../../db/queries/inbound-messages.js';
import { existingTicketIds, lockTickets } from '../../db/queries/tickets.js';
import { findTicketsByMessageIds } from '../../db/queries/messages.js';
import { listTicketParticipants } from '../../db/queries/ticket-participants.js';
import { emailsWithoutAccount } from '../../db/queries/users.js';
import { normalizeMessageId } from '../../core/message-id.js';
import type { AnalyzedMessage } from './analyze.js';
import { findBounced } from './bounce.js';
import { findCollision } from './collision.js';
import type { BatchMessage, DecideConfig, MessageFacts, TicketFacts } from './decide.js';
import { evidenceTicketIds, matchThread, referencedIds, tagTicketIds, type ThreadFacts } from './thread.js';

/**
 * What the database knows about every message of a batch, before any rule
 * runs, in a few set-wise statements: the dedupe ledger claim and its owner,
 * the breaker's and quota's inputs, the sender's account (one statement);
 * the thread evidence (which tickets exist, stored Message-IDs, the sender's
 * part in tagged tickets); the matched tickets, locked in id order, with
 * their participants; CC addresses without an account. Staff replies
 * (collisions) and bounces, rare, are looked at one by one.
 *
 * The caller passes at most one message per sender, dedupe key and thread
 * (route-batch.ts): the facts of one message never depend on another's
 * decision in the same round.
 */

/** The mailbox a message was delivered to, for per-address dedupe: reply addresses count as their support address. */
export function dedupeMailbox(cfg: Pick<Config, 'SUPPORT_ADDRESSES'>, rcptTo: string[]): string {
  const boxes = rcptTo.map((r) => {
    const lower = r.toLowerCase();
    const at = lower.lastIndexOf('@');
    return `${lower.slice(0, at).split('+')[0]}${lower.slice(at)}`;
  });
  return boxes.filter((b) => cfg.SUPPORT_ADDRESSES.includes(b)).sort()[0] ?? boxes.sort()[0] ?? cfg.SUPPORT_ADDRESSES[0]!;
}

/** The dedupe ledger key: the Message-ID, or a hash of the raw bytes when there is none. */
export function dedupeKey(a: Pick<AnalyzedMessage, 'messageId' | 'sha256'>): string {
  return a.messageId ? `mid:${normalizeMessageId(a.messageId)}` : `sha256:${a.sha256}`;
}

export async function gatherFacts(trx: Db, cfg: DecideConfig, msgs: BatchMessage[]): Promise<Map<number, MessageFacts>> {
  const claims = await claimInboundFacts(
    trx,
    cfg.SENDER_BREAKER_WINDOW_MS,
    msgs.map(({ row, a }) => ({ id: row.id, box: dedupeMailbox(cfg, row.rcpt_to), key: dedupeKey(a), sender: a.from?.address ?? '' })),
  );
  // Thread evidence, only for mail with a sender (nothing else gets that far).
  const withSender = msgs.filter((m) => m.a.from !== null);
  const existing = await existingTicketIds(
    trx,
    withSender.flatMap((m) => evidenceTicketIds(cfg, m.a, m.row.rcpt_to)),
  );
  const tagged = withSender.flatMap((m) => tagTicketIds(cfg, m.a).filter((id) => existing.has(id)));
  const tagParticipants = await listTicketParticipants(trx, tagged);
  const stored = await findTicketsByMessageIds(
    trx,
    withSender.map((m) => ({
      key: m.row.id,
      messageIds: referencedIds(m.a),
      senderId: claims.get(m.row.id)!.sender?.id ?? null,
      senderEmail: m.a.from!.address,
    })),
  );

  const threads = new Map<number, ThreadFacts>();
  const matched = new Map<number, number>();
  for (const m of withSender) {
    const senderId = claims.get(m.row.id)!.sender?.id ?? null;
    const thread: ThreadFacts = {
      existing,
      takesPart: new Set(tagParticipants.filter((p) => p.userId === senderId).map((p) => p.ticketId)),
      stored: stored.get(m.row.id) ?? null,
    };
    threads.set(m.row.id, thread);
    const { match } = matchThread(cfg, m.a, m.row.rcpt_to, senderId, thread);
    if (match) matched.set(m.row.id, match.ticketId);
  }

  const locked = await lockTickets(trx, [...matched.values()]);
  const participants = await listTicketParticipants(trx, [...locked.keys()]);
  const tickets = new Map<number, TicketFacts>();
  for (const [id, t] of locked) tickets.set(id, { id, status: t.status, participants: participants.filter((p) => p.ticketId === id) });

  const withoutAccount =
    cfg.REGISTRATION === 'closed'
      ? new Set(
          await emailsWithoutAccount(
            trx,
            withSender.flatMap((m) => [...m.a.to, ...m.a.cc].map((x) => x.address)),
          ),
        )
      : new Set<string>();

  const out = new Map<number, MessageFacts>();
  for (const { row, a } of msgs) {
    const c = claims.get(row.id)!;
    const ticketId = matched.get(row.id);
    const ticket = ticketId === undefined ? null : (tickets.get(ticketId) ?? null);
    const collisionWith =
      ticket && c.sender?.role === 'staff' && cfg.COLLISION_WINDOW !== null
        ? await findCollision(trx, cfg.COLLISION_WINDOW, ticket.id, c.sender.id, a)
        : null;
    out.set(row.id, {
      duplicateOf: c.ownerId !== null && c.ownerId !== row.id ? { inboundId: c.ownerId, ticketId: c.ownerTicketId } : null,
      paused: c.paused,
      recent: c.recent,
      bytesToday: c.bytesToday,
      sender: c.sender,
      thread: threads.get(row.id) ?? { existing, takesPart: new Set(), stored: null },
      ticket,
      withoutAccount,
      collisionWith,
      bounce: a.machine?.kind === 'bounce' ? await findBounced(trx, cfg, a, row.rcpt_to) : null,
    });
  }
  return out;
}
