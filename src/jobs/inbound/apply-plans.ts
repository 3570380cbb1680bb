import type { AppContext } from '../../context.js';
import type { Db } from '../../db/database.js';
import { markInboundDecided, releaseHeldCollisions, type InboundDecision } from '../../db/queries/inbound-messages.js';
import { markBounced } from '../../db/queries/outbound-mails.js';
import { addAttachments } from '../../db/queries/attachments.js';
import { addCcParticipants } from '../../db/queries/ticket-participants.js';
import { createEmailTickets, reopenOnCustomerReply } from '../../db/queries/tickets.js';
import { ensureUsers, listStaffRefs, type NewUser, type UserRef } from '../../db/queries/users.js';
import { normalizeEmail } from '../../core/address.js';
import { directRecipients, queueTicketMails, ticketCreatedMails } from '../../mail/notify.js';
import { insertOutboundMails } from '../../mail/outbox.js';
import { noticeStaffAuthFailure } from '../../mail/staff-auth-notice.js';
import type { AnalyzedMessage } from './analyze.js';
import { noticeCollision } from './collision.js';
import type { BatchMessage, HoldPlan, Plan, PlanSender } from './decide.js';
import { held, type Held } from './held.js';
import { applyStaffCommands } from './staff-commands.js';
import { attachmentRows, firstMessageFields, storeMessage } from './store.js';

/**
 * Writes the plans of one round of decide.ts, inside the caller's
 * transaction. The common case, new tickets, is written set-wise for the
 * whole round (accounts, tickets, requesters, first messages, CCs,
 * attachments, outbox rows: a handful of statements, whatever the round's
 * size); replies and the rarer side effects (bounce marks, notices, staff
 * commands) one plan at a time. Every inbound row is marked in one statement.
 */

export type Outcome =
  | { status: 'held'; held: Held }
  | {
      status: 'processed';
      ticketId: number | null;
      reason: string | null;
      outboxIds: number[];
      /** Held messages this one released (`#send`): processed again after commit. */
      requeue?: number[];
    };

/** The listing facts a parsed message gives its inbound row. */
export function listingFacts(a: AnalyzedMessage) {
  return {
    headerMessageId: a.messageId?.slice(0, 998) ?? null,
    fromAddress: a.from?.address ?? a.fromHeaderAddress?.toLowerCase() ?? null,
    subject: a.subject,
  };
}

/** The accounts the plans need: new senders (even of held mail, as the rules reached them) and new CCs. */
async function ensureAccounts(trx: Db, cfg: AppContext['config'], plans: Plan[]): Promise<Map<string, UserRef>> {
  const wanted = new Map<string, NewUser>();
  for (const p of plans) {
    if (p.sender?.kind === 'create') wanted.set(normalizeEmail(p.sender.user.email), p.sender.user);
    if (p.kind === 'new_ticket' || p.kind === 'customer_reply')
      for (const cc of p.ccs)
        if (!wanted.has(normalizeEmail(cc.email)))
          wanted.set(normalizeEmail(cc.email), { email: cc.email, name: cc.name || null, locale: cfg.DEFAULT_LOCALE });
  }
  return ensureUsers(trx, [...wanted.values()]);
}

function senderRef(s: PlanSender, accounts: Map<string, UserRef>): UserRef {
  if (s.kind === 'existing') return s.user;
  const user = accounts.get(normalizeEmail(s.user.email))!;
  // Someone created the address meanwhile (`cli staff add`): rare enough to retry, and the retry sees the account.
  if (user.role !== 'customer') throw new Error(`inbound: new sender ${user.email} turned out to be ${user.role}`);
  return user;
}

async function applyHold(ctx: AppContext, trx: Db, p: HoldPlan): Promise<Outcome> {
  let outboxIds: number[] = [];
  const e = p.effect;
  if (e?.kind === 'bounce') await markBounced(trx, e.outboundIds, { inboundId: p.inboundId, diagnostic: e.diagnostic });
  else if (e?.kind === 'staff_auth_notice') outboxIds = await noticeStaffAuthFailure(ctx, trx, { inboundId: p.inboundId, ...e });
  else if (e?.kind === 'collision_notice') outboxIds = await noticeCollision(trx, ctx.config, { inboundId: p.inboundId, ...e });
  return { status: 'held', held: held(p.reason, p.detail, p.ticketId, outboxIds) };
}

/** All new tickets of the round: one statement for tickets, requesters and first messages, then CCs, attachments, outbox. */
async function applyNewTickets(
  ctx: AppContext,
  trx: Db,
  items: Array<{ plan: Extract<Plan, { kind: 'new_ticket' }>; m: BatchMessage; author: UserRef }>,
  accounts: Map<string, UserRef>,
  outcomes: Map<number, Outcome>,
): Promise<void> {
  if (items.length === 0) return;
  const created = await createEmailTickets(
    trx,
    items.map(({ plan, m, author }) => ({
      inboundId: m.row.id,
      subject: m.a.subject,
      requesterId: author.id,
      followUpOf: plan.followUpOf,
      ...firstMessageFields(m.a),
    })),
  );
  const at = (id: number) => created.get(id)!;
  await addAttachments(
    trx,
    items.flatMap(({ m }) => attachmentRows(at(m.row.id).messageId, m.a)),
  );
  await addCcParticipants(
    trx,
    items.flatMap(({ plan, m }) =>
      plan.ccs.map((cc) => ({ ticketId: at(m.row.id).ticketId, userId: accounts.get(normalizeEmail(cc.email))!.id })),
    ),
  );
  // A new ticket has no assignee: every agent is told.
  const staff = await listStaffRefs(trx);
  const mails = items.map(({ m, author }) => {
    const { ticketId, messageId } = at(m.row.id);
    const event = { type: 'ticket_created' as const, ticketId, messageId, authorId: author.id, directTo: directRecipients(m.a) };
    return ticketCreatedMails(ctx.config, event, author, author.id, staff);
  });
  const ids = await insertOutboundMails(trx, ctx.config, mails.flat());
  let next = 0;
  items.forEach(({ plan, m }, i) => {
    const outboxIds = ids.slice(next, next + mails[i]!.length);
    next += mails[i]!.length;
    const reason = plan.followUpOf ? `follow_up_of:${plan.followUpOf}` : null;
    outcomes.set(m.row.id, { status: 'processed', ticketId: at(m.row.id).ticketId, reason, outboxIds });
  });
}

async function applyReply(ctx: AppContext, trx: Db, p: Plan, m: BatchMessage, author: UserRef): Promise<Outcome> {
  const cfg = ctx.config;
  const { row, a } = m;
  if (p.kind === 'customer_reply') {
    const message = await storeMessage(trx, row, a, { ticketId: p.ticket.id, authorId: author.id, visibility: 'public' });
    await reopenOnCustomerReply(trx, p.ticket);
    const outboxIds = await queueTicketMails(trx, cfg, {
      type: 'message_added',
      ticketId: p.ticket.id,
      messageId: message.id,
      authorId: author.id,
      visibility: 'public',
      directTo: directRecipients(a),
    });
    return { status: 'processed', ticketId: p.ticket.id, reason: null, outboxIds };
  }
  if (p.kind !== 'staff_reply') throw new Error(`not a reply plan: ${p.kind}`);
  // Back to `received` in this transaction; processed (waived from `collision`) once it commits.
  const requeue = p.commands.send ? await releaseHeldCollisions(trx, p.ticketId, author.email) : [];
  let outboxIds: number[] = [];
  if (p.message) {
    const { visibility, bodyText, bodyHtml } = p.message;
    const message = await storeMessage(trx, row, a, { ticketId: p.ticketId, authorId: author.id, visibility, bodyText, bodyHtml });
    await applyStaffCommands(trx, cfg, p.ticketId, p.commands, { id: author.id, publicReply: visibility === 'public' });
    outboxIds = await queueTicketMails(trx, cfg, {
      type: 'message_added',
      ticketId: p.ticketId,
      messageId: message.id,
      authorId: author.id,
      visibility,
      directTo: directRecipients(a),
    });
  } else {
    await applyStaffCommands(trx, cfg, p.ticketId, p.commands, { id: author.id, publicReply: false });
  }
  return { status: 'processed', ticketId: p.ticketId, reason: requeue.length ? `released:${requeue.join(',')}` : null, outboxIds, requeue };
}

export function decision(id: number, outcome: Outcome, a: AnalyzedMessage | null, staffAuth: unknown = null): InboundDecision {
  const base = { id, listing: a ? listingFacts(a) : null, staffAuth, senderAuth: a?.senderAuth ?? null };
  return outcome.status === 'held'
    ? { ...base, status: 'held', reason: outcome.held.reason, error: outcome.held.detail, ticketId: outcome.held.ticketId }
    : { ...base, status: 'processed', reason: outcome.reason, error: null, ticketId: outcome.ticketId };
}

/** Writes the plans (one per message, at most one per sender, dedupe key and ticket) and marks their rows. */
export async function applyPlans(ctx: AppContext, trx: Db, items: Array<{ plan: Plan; m: BatchMessage }>): Promise<Map<number, Outcome>> {
  const outcomes = new Map<number, Outcome>();
  const accounts = await ensureAccounts(
    trx,
    ctx.config,
    items.map((i) => i.plan),
  );
  const fresh: Parameters<typeof applyNewTickets>[2] = [];
  for (const { plan: p, m } of items) {
    if (p.sender) senderRef(p.sender, accounts);
    if (p.kind === 'hold') outcomes.set(m.row.id, await applyHold(ctx, trx, p));
    else if (p.kind === 'duplicate')
      outcomes.set(m.row.id, { status: 'processed', ticketId: p.ticketId, reason: 'duplicate', outboxIds: [] });
    else if (p.kind === 'new_ticket') fresh.push({ plan: p, m, author: senderRef(p.sender, accounts) });
  }
  await applyNewTickets(ctx, trx, fresh, accounts, outcomes);
  const replyCcs = items.flatMap(({ plan: p }) =>
    p.kind === 'customer_reply' ? p.ccs.map((cc) => ({ ticketId: p.ticket.id, userId: accounts.get(normalizeEmail(cc.email))!.id })) : [],
  );
  await addCcParticipants(trx, replyCcs);
  for (const { plan: p, m } of items) {
    if (p.kind === 'customer_reply' || p.kind === 'staff_reply')
      outcomes.set(m.row.id, await applyReply(ctx, trx, p, m, senderRef(p.sender, accounts)));
  }
  await markInboundDecided(
    trx,
    items.map(({ plan, m }) => decision(m.row.id, outcomes.get(m.row.id)!, m.a, plan.staffAuth)),
  );
  return outcomes;
}
