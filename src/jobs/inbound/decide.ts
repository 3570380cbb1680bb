import type { Config } from '../../config.js';
import type { InboundMessageRow, Locale, ParticipantRole, TicketStatus } from '../../db/database.js';
import type { UserRef } from '../../db/queries/users.js';
import { isOurAddress, normalizeEmail } from '../../core/address.js';
import { staffVerdict, type StaffAuthResult } from '../../mail/sender-auth.js';
import type { AnalyzedMessage } from './analyze.js';
import { collisionDetail } from './collision.js';
import type { HeldReason } from './held.js';
import { parseStaffCommands, type StaffCommands } from './staff-commands.js';
import { ccCandidates } from './store.js';
import { matchThread, type ThreadFacts } from './thread.js';

/**
 * Every inbound rule, as one pure function: what a parsed message becomes,
 * given the facts the database had about it (gather-facts.ts). No I/O and no
 * clock: the same facts always give the same plan, and apply-plans.ts writes
 * it. Rules run in a fixed order; a rule the operator released this message
 * from (`held release`) is skipped.
 */

export type InboundRow = Pick<InboundMessageRow, 'id' | 'raw' | 'mail_from' | 'rcpt_to' | 'client_address' | 'helo' | 'release_overrides'>;

export type DecideConfig = Pick<
  Config,
  | 'SUPPORT_ADDRESSES'
  | 'MAIL_DOMAIN'
  | 'SECRET_KEY'
  | 'DEFAULT_LOCALE'
  | 'REGISTRATION'
  | 'MAX_CCS'
  | 'STAFF_AUTH'
  | 'COLLISION_WINDOW'
  | 'SENDER_BREAKER_MAX'
  | 'SENDER_BREAKER_WINDOW_MS'
  | 'SENDER_DAILY_BYTES'
>;

export interface BatchMessage {
  row: InboundRow;
  a: AnalyzedMessage;
}

/** The ticket a message matched, locked by the gathering transaction. */
export interface TicketFacts {
  id: number;
  status: TicketStatus;
  participants: Array<{ userId: number; role: ParticipantRole; email: string }>;
}

/** What the database knows about one message (gather-facts.ts). */
export interface MessageFacts {
  /** Another row already holds this message's dedupe entry: that row and its ticket. */
  duplicateOf: { inboundId: number; ticketId: number | null } | null;
  /** The sender breaker's inputs: a recent `loop` hold of the sender, how many of their messages were decided lately. */
  paused: number | null;
  recent: number;
  /** The sender's processed bytes of the last 24 h, this message included. */
  bytesToday: number;
  sender: UserRef | null;
  thread: ThreadFacts;
  /** The matched ticket (matchThread on `thread`), null without a match. */
  ticket: TicketFacts | null;
  /** Addresses among the message's To/Cc without an account (only read with REGISTRATION=closed). */
  withoutAccount: ReadonlySet<string>;
  /** A colleague's public reply this staff reply would collide with (only read for staff replies). */
  collisionWith: number | null;
  /** For a bounce: the sent mails it proves failed. */
  bounce: { outboundIds: number[]; diagnostic: string } | null;
}

export interface NewSender {
  email: string;
  name: string | null;
  locale: Locale;
}

/** Who the message is from: an account, or the implicit account to create for a new sender. */
export type PlanSender = { kind: 'existing'; user: UserRef } | { kind: 'create'; user: NewSender };

export interface PlannedCc {
  email: string;
  name: string;
}

export type HoldEffect =
  | { kind: 'bounce'; outboundIds: number[]; diagnostic: string }
  | { kind: 'staff_auth_notice'; staff: { id: number; email: string }; auth: StaffAuthResult }
  | { kind: 'collision_notice'; ticketId: number; authorId: number; otherMessageId: number };

interface PlanBase {
  inboundId: number;
  /** Set once the rules reached the sender's account: a new sender's is created even when the message is then held. */
  sender: PlanSender | null;
  /** The staff identity verdict, stored on the row (it explains the decision). */
  staffAuth: StaffAuthResult | null;
}

export type Plan = PlanBase &
  (
    | { kind: 'hold'; reason: HeldReason; detail: string | null; ticketId: number | null; effect: HoldEffect | null }
    | { kind: 'duplicate'; ticketId: number | null }
    | { kind: 'new_ticket'; sender: PlanSender; ccs: PlannedCc[]; followUpOf: number | null }
    | { kind: 'customer_reply'; sender: PlanSender; ticket: { id: number; status: TicketStatus }; ccs: PlannedCc[] }
    | {
        kind: 'staff_reply';
        sender: { kind: 'existing'; user: UserRef };
        ticketId: number;
        commands: StaffCommands;
        /** The stored message (null: the mail only carried commands). */
        message: { visibility: 'public' | 'internal'; bodyText: string; bodyHtml: string | null } | null;
      }
  );

export type HoldPlan = Extract<Plan, { kind: 'hold' }>;

/** The per-sender breaker's verdict from the sender's paused marker and recent count (null: not tripped). */
export function senderBreakerReason(
  cfg: Pick<Config, 'SENDER_BREAKER_MAX' | 'SENDER_BREAKER_WINDOW_MS'>,
  paused: number | null,
  recent: number,
): string | null {
  if (paused !== null) return `sender paused for an hour after tripping the breaker (message ${paused})`;
  if (recent + 1 > cfg.SENDER_BREAKER_MAX)
    return `${recent + 1} messages in ${cfg.SENDER_BREAKER_WINDOW_MS / 1000}s (max ${cfg.SENDER_BREAKER_MAX})`;
  return null;
}

/**
 * The daily byte quota's verdict: bytes the sender's processed mail of the
 * last 24 h plus this message bring (null: within SENDER_DAILY_BYTES). Held
 * mail does not count, so a flood forged in someone's name is held without
 * using up that person's quota.
 */
export function quotaReason(cfg: Pick<Config, 'SENDER_DAILY_BYTES'>, bytesToday: number): string | null {
  return bytesToday > cfg.SENDER_DAILY_BYTES
    ? `${bytesToday} bytes in 24 h with this message (max SENDER_DAILY_BYTES=${cfg.SENDER_DAILY_BYTES})`
    : null;
}

/** Command lines were removed from the text; the HTML still has them, so it is dropped when they were used. */
function usedCommands(c: StaffCommands): boolean {
  return (
    c.note ||
    c.send ||
    c.status !== undefined ||
    c.priority !== undefined ||
    c.assign !== undefined ||
    c.ccAdd.length > 0 ||
    c.ccRemove.length > 0
  );
}

export function decide(cfg: DecideConfig, f: MessageFacts, m: BatchMessage): Plan {
  const { row, a } = m;
  const skip = new Set(row.release_overrides);
  let sender: PlanSender | null = null;
  let staffAuth: StaffAuthResult | null = null;
  const hold = (
    reason: HeldReason,
    detail: string | null = null,
    ticketId: number | null = null,
    effect: HoldEffect | null = null,
  ): Plan => ({
    kind: 'hold',
    inboundId: row.id,
    sender,
    staffAuth,
    reason,
    detail,
    ticketId,
    effect,
  });

  if (f.duplicateOf) return { kind: 'duplicate', inboundId: row.id, sender, staffAuth, ticketId: f.duplicateOf.ticketId };

  if (a.machine && !skip.has(a.machine.kind)) {
    if (a.machine.kind === 'bounce') {
      const ids = f.bounce?.outboundIds ?? [];
      const what = ids.length ? `outbound mail ${ids.join(', ')} marked failed` : 'no outbound mail of ours matched';
      return hold(
        'bounce',
        `${a.machine.rule}; ${what}`,
        null,
        ids.length ? { kind: 'bounce', outboundIds: ids, diagnostic: f.bounce!.diagnostic } : null,
      );
    }
    return hold(a.machine.kind, a.machine.rule);
  }
  // Nobody to attribute it to: releasing cannot help, it stays held.
  if (!a.from) return hold('invalid_sender', a.fromHeaderAddress ? `unusable From address "${a.fromHeaderAddress}"` : 'no From header');
  if (isOurAddress(cfg, a.from.address) && !skip.has('own_mail')) return hold('own_mail', `From is our own address ${a.from.address}`);
  const breaker = senderBreakerReason(cfg, f.paused, f.recent);
  if (breaker && !skip.has('loop')) return hold('loop', breaker);
  const quota = quotaReason(cfg, f.bytesToday);
  if (quota && !skip.has('sender_quota')) return hold('sender_quota', quota);

  if (f.sender) sender = { kind: 'existing', user: f.sender };
  else {
    if (cfg.REGISTRATION === 'closed' && !skip.has('unknown_sender')) return hold('unknown_sender', a.from.address);
    sender = { kind: 'create', user: { email: a.from.address, name: a.from.name || null, locale: a.japanese ? 'ja' : cfg.DEFAULT_LOCALE } };
  }
  const senderEmail = sender.user.email;
  const staff = f.sender?.role === 'staff' ? f.sender : null;

  /**
   * Mail whose From is a staff account counts as staff only when it is
   * authenticated (the sender verdict computed before the transaction, or the
   * staff member's own reply token in token mode).
   */
  const staffIdentity = (s: UserRef, ticketId: number | null): Plan | null => {
    if (skip.has('auth_failed')) return null;
    staffAuth = staffVerdict(cfg, s, s.email, token, a.senderAuth ?? null);
    if (staffAuth.ok) return null;
    return hold('auth_failed', staffAuth.reason, ticketId, {
      kind: 'staff_auth_notice',
      staff: { id: s.id, email: s.email },
      auth: staffAuth,
    });
  };

  /**
   * Adding people is a privileged effect of customer mail: the new CCs get the
   * ticket's mail and a way into it. Only a From that SPF/DKIM/DMARC vouch for
   * (aligned pass) may do it, and with REGISTRATION=closed only people who
   * already have an account may be added.
   */
  const refuseNewCcs = (ccs: PlannedCc[], ticketId: number | null): Plan | null => {
    if (ccs.length === 0) return null;
    if (!a.senderAuth?.ok && !skip.has('sender_unverified')) {
      const why = a.senderAuth?.reason ?? 'not checked';
      return hold(
        'sender_unverified',
        `${ccs.length} new CC address(es) need SPF/DKIM/DMARC aligned with the From domain (${why})`,
        ticketId,
      );
    }
    if (cfg.REGISTRATION === 'closed' && !skip.has('unknown_cc')) {
      const unknown = ccs.map((c) => normalizeEmail(c.email)).filter((e) => f.withoutAccount.has(e));
      if (unknown.length)
        return hold('unknown_cc', `no account: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ', …' : ''}`, ticketId);
    }
    return null;
  };

  const newTicket = (followUpOf: number | null): Plan => {
    const ccs = ccCandidates(cfg, a, senderEmail);
    if (ccs.length > cfg.MAX_CCS && !skip.has('cc_limit')) return hold('cc_limit', `${ccs.length} CC addresses (max ${cfg.MAX_CCS})`);
    return refuseNewCcs(ccs, null) ?? { kind: 'new_ticket', inboundId: row.id, sender: sender!, staffAuth, ccs, followUpOf };
  };

  const { match, token } = matchThread(cfg, a, row.rcpt_to, f.sender?.id ?? null, f.thread);
  if (!match) {
    // A new ticket "from staff" is shown to other staff as their colleague's: same rule as replies.
    return (staff && staffIdentity(staff, null)) || newTicket(null);
  }
  const ticket = f.ticket;
  if (ticket?.id !== match.ticketId) throw new Error(`facts of inbound ${row.id} lack its matched ticket ${match.ticketId}`);

  if (staff) {
    const refused = staffIdentity(staff, ticket.id);
    if (refused) return refused;
    if (ticket.status === 'closed' && !skip.has('ticket_closed')) return hold('ticket_closed', `ticket ${ticket.id} is closed`, ticket.id);
    const commands = parseStaffCommands(a.visibleText);
    const hasBody = commands.body !== '' || a.attachments.length > 0;
    const publicReply = !commands.note && hasBody;
    if (publicReply && !commands.send && cfg.COLLISION_WINDOW !== null && !skip.has('collision') && f.collisionWith !== null)
      return hold('collision', collisionDetail(ticket.id, f.collisionWith), ticket.id, {
        kind: 'collision_notice',
        ticketId: ticket.id,
        authorId: staff.id,
        otherMessageId: f.collisionWith,
      });
    const message = hasBody
      ? {
          visibility: commands.note ? ('internal' as const) : ('public' as const),
          bodyText: commands.body,
          bodyHtml: usedCommands(commands) ? null : a.visibleHtml,
        }
      : null;
    return {
      kind: 'staff_reply',
      inboundId: row.id,
      sender: { kind: 'existing', user: staff },
      staffAuth,
      ticketId: ticket.id,
      commands,
      message,
    };
  }

  const role = ticket.participants.find((p) => p.userId === f.sender?.id)?.role ?? null;
  if (!role && !skip.has('not_participant'))
    return hold('not_participant', `ticket ${ticket.id} (matched by ${match.evidence})`, ticket.id);
  // Someone else's reply address or Message-ID: evidence about them, not about this sender.
  if (!match.tied && !skip.has('unbound_evidence'))
    return hold('unbound_evidence', `ticket ${ticket.id} matched by a ${match.evidence} issued to someone else`, ticket.id);
  if (ticket.status === 'closed') return newTicket(ticket.id);

  const present = new Set(ticket.participants.map((p) => p.email));
  const ccs = ccCandidates(cfg, a, senderEmail).filter((c) => !present.has(c.email.toLowerCase()));
  const ccCount = ticket.participants.filter((p) => p.role === 'cc').length;
  if (ccs.length && ccCount + ccs.length > cfg.MAX_CCS && !skip.has('cc_limit'))
    return hold('cc_limit', `${ccs.length} new CC addresses would exceed MAX_CCS=${cfg.MAX_CCS}`, ticket.id);
  return (
    refuseNewCcs(ccs, ticket.id) ?? {
      kind: 'customer_reply',
      inboundId: row.id,
      sender,
      staffAuth,
      ticket: { id: ticket.id, status: ticket.status },
      ccs,
    }
  );
}
