import type { AppContext } from '../../context.js';
import type { Db, InboundMessageRow, TicketRow } from '../../db/database.js';
import { countCcs, lockTicket, participantRole, reopenOnCustomerReply } from '../../db/queries/tickets.js';
import { staffVerdict } from '../../mail/sender-auth.js';
import { noticeStaffAuthFailure } from '../../mail/staff-auth-notice.js';
import { releaseHeldCollisions } from '../../db/queries/inbound-messages.js';
import { emailsWithoutAccount } from '../../db/queries/users.js';
import { isOurAddress } from '../../core/address.js';
import { directRecipients, queueTicketMails, type TicketEvent } from '../../mail/notify.js';
import type { ReplyToken } from '../../mail/tokens.js';
import type { AnalyzedMessage } from './analyze.js';
import { attachBounce } from './bounce.js';
import { findCollision, holdCollision } from './collision.js';
import { createSender, gatherFacts, type Sender } from './facts.js';
import { held, type Held, type HeldReason } from './held.js';
import { applyStaffCommands, parseStaffCommands } from './staff-commands.js';
import { addCcs, ccCandidates, createTicketWithMessage, newCcs, storeMessage } from './store.js';
import { findThread } from './thread.js';

/**
 * Decides what one parsed message becomes, inside the caller's transaction
 * (the inbound row is locked). Rules run in a fixed order; a rule the
 * operator released this message from (`held release`) is skipped.
 */

export type InboundRow = Pick<InboundMessageRow, 'id' | 'raw' | 'mail_from' | 'rcpt_to' | 'client_address' | 'helo' | 'release_overrides'>;

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

/** The outcome "held" (with no outbox rows): the decision returns it, nothing throws. */
const hold = (reason: HeldReason, detail: string | null = null, ticketId: number | null = null): Outcome => ({
  status: 'held',
  held: held(reason, detail, ticketId),
});

type Cfg = AppContext['config'];

/**
 * Adding people is a privileged effect of customer mail: the new CCs get the
 * ticket's mail and a way into it. Only a From that SPF/DKIM/DMARC vouch for
 * (aligned pass) may do it, and with REGISTRATION=closed only people who
 * already have an account may be added. Returns the held outcome, or null.
 */
async function checkNewCcs(
  trx: Db,
  cfg: Cfg,
  a: AnalyzedMessage,
  ccs: { email: string }[],
  skip: Set<string>,
  ticketId: number | null,
): Promise<Outcome | null> {
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
    const unknown = await emailsWithoutAccount(
      trx,
      ccs.map((c) => c.email),
    );
    if (unknown.length)
      return hold('unknown_cc', `no account: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ', …' : ''}`, ticketId);
  }
  return null;
}

async function newTicket(
  trx: Db,
  cfg: Cfg,
  row: InboundRow,
  a: AnalyzedMessage,
  user: Sender,
  skip: Set<string>,
  followUpOf: number | null,
): Promise<Outcome> {
  const ccs = ccCandidates(cfg, a, user.email);
  if (ccs.length > cfg.MAX_CCS && !skip.has('cc_limit')) return hold('cc_limit', `${ccs.length} CC addresses (max ${cfg.MAX_CCS})`);
  const refused = await checkNewCcs(trx, cfg, a, ccs, skip, null);
  if (refused) return refused;
  const { ticketId, messageId } = await createTicketWithMessage(trx, row, a, { requesterId: user.id, followUpOf });
  await addCcs(trx, cfg, ticketId, ccs);
  const outboxIds = await queueTicketMails(trx, cfg, {
    type: 'ticket_created',
    ticketId,
    messageId,
    authorId: user.id,
    directTo: directRecipients(a),
  });
  return { status: 'processed', ticketId, reason: followUpOf ? `follow_up_of:${followUpOf}` : null, outboxIds };
}

async function customerReply(
  trx: Db,
  cfg: Cfg,
  row: InboundRow,
  a: AnalyzedMessage,
  user: Sender,
  ticket: TicketRow,
  skip: Set<string>,
): Promise<Outcome> {
  const ccs = await newCcs(trx, ticket.id, ccCandidates(cfg, a, user.email));
  if (ccs.length && (await countCcs(trx, ticket.id)) + ccs.length > cfg.MAX_CCS && !skip.has('cc_limit')) {
    return hold('cc_limit', `${ccs.length} new CC addresses would exceed MAX_CCS=${cfg.MAX_CCS}`, ticket.id);
  }
  const refused = await checkNewCcs(trx, cfg, a, ccs, skip, ticket.id);
  if (refused) return refused;
  await addCcs(trx, cfg, ticket.id, ccs);
  const message = await storeMessage(trx, row, a, { ticketId: ticket.id, authorId: user.id, visibility: 'public' });
  await reopenOnCustomerReply(trx, ticket);
  const event: TicketEvent = {
    type: 'message_added',
    ticketId: ticket.id,
    messageId: message.id,
    authorId: user.id,
    visibility: 'public',
    directTo: directRecipients(a),
  };
  return { status: 'processed', ticketId: ticket.id, reason: null, outboxIds: await queueTicketMails(trx, cfg, event) };
}

/**
 * Mail whose From is a staff account counts as staff only when it is
 * authenticated (the sender verdict the pipeline computed before the
 * transaction, or the staff member's own reply token in token mode); the
 * verdict is stored on the row for `held show`.
 * Returns the held outcome when it is not, null when it may proceed.
 */
async function checkStaffIdentity(
  ctx: AppContext,
  trx: Db,
  row: InboundRow,
  a: AnalyzedMessage,
  user: Sender,
  token: ReplyToken | null,
  skip: Set<string>,
  ticketId: number | null,
): Promise<Outcome | null> {
  if (skip.has('auth_failed')) return null;
  const auth = staffVerdict(ctx.config, user, user.email, token, a.senderAuth ?? null);
  await trx
    .updateTable('inbound_messages')
    .set({ auth: JSON.stringify(auth) })
    .where('id', '=', row.id)
    .execute();
  if (auth.ok) return null;
  const outboxIds = await noticeStaffAuthFailure(ctx, trx, { inboundId: row.id, staff: user, auth });
  return { status: 'held', held: held('auth_failed', auth.reason, ticketId, outboxIds) };
}

async function staffReply(
  ctx: AppContext,
  trx: Db,
  row: InboundRow,
  a: AnalyzedMessage,
  user: Sender,
  ticket: TicketRow,
  token: ReplyToken | null,
  skip: Set<string>,
): Promise<Outcome> {
  const cfg = ctx.config;
  const refused = await checkStaffIdentity(ctx, trx, row, a, user, token, skip, ticket.id);
  if (refused) return refused;
  if (ticket.status === 'closed' && !skip.has('ticket_closed')) return hold('ticket_closed', `ticket ${ticket.id} is closed`, ticket.id);
  const cmds = parseStaffCommands(a.visibleText);
  const publicReply = !cmds.note && (cmds.body !== '' || a.attachments.length > 0);
  if (publicReply && !cmds.send && cfg.COLLISION_WINDOW !== null && !skip.has('collision')) {
    const other = await findCollision(trx, cfg.COLLISION_WINDOW, ticket.id, user.id, a);
    if (other !== null)
      return {
        status: 'held',
        held: await holdCollision(trx, cfg, { inboundId: row.id, ticketId: ticket.id, author: user, otherMessageId: other }),
      };
  }
  // Back to `received` in this transaction; processed (waived from `collision`) once it commits.
  const requeue = cmds.send ? await releaseHeldCollisions(trx, ticket.id, user.email) : [];
  let outboxIds: number[] = [];
  if (cmds.body !== '' || a.attachments.length > 0) {
    const visibility = cmds.note ? 'internal' : 'public';
    // Command lines were removed from the text; the HTML still has them, so it is dropped when they were used.
    const usedCommands =
      cmds.note ||
      cmds.send ||
      cmds.status !== undefined ||
      cmds.priority !== undefined ||
      cmds.assign !== undefined ||
      cmds.ccAdd.length > 0 ||
      cmds.ccRemove.length > 0;
    const message = await storeMessage(trx, row, a, {
      ticketId: ticket.id,
      authorId: user.id,
      visibility,
      bodyText: cmds.body,
      bodyHtml: usedCommands ? null : a.visibleHtml,
    });
    await applyStaffCommands(trx, cfg, ticket.id, cmds, { id: user.id, publicReply: visibility === 'public' });
    const event: TicketEvent = {
      type: 'message_added',
      ticketId: ticket.id,
      messageId: message.id,
      authorId: user.id,
      visibility,
      directTo: directRecipients(a),
    };
    outboxIds = await queueTicketMails(trx, cfg, event);
  } else {
    await applyStaffCommands(trx, cfg, ticket.id, cmds, { id: user.id, publicReply: false });
  }
  return { status: 'processed', ticketId: ticket.id, reason: requeue.length ? `released:${requeue.join(',')}` : null, outboxIds, requeue };
}

export async function routeMessage(ctx: AppContext, trx: Db, row: InboundRow, a: AnalyzedMessage): Promise<Outcome> {
  const cfg = ctx.config;
  const skip = new Set(row.release_overrides);

  const facts = await gatherFacts(trx, cfg, row, a);
  if (facts.duplicateOf) return { status: 'processed', ticketId: facts.duplicateOf.ticketId, reason: 'duplicate', outboxIds: [] };

  if (a.machine && !skip.has(a.machine.kind)) {
    if (a.machine.kind === 'bounce') {
      const ids = await attachBounce(trx, cfg, row.id, a, row.rcpt_to);
      return hold(
        'bounce',
        `${a.machine.rule}; ${ids.length ? `outbound mail ${ids.join(', ')} marked failed` : 'no outbound mail of ours matched'}`,
      );
    }
    return hold(a.machine.kind, a.machine.rule);
  }
  // Nobody to attribute it to: releasing cannot help, it stays held.
  if (!a.from) return hold('invalid_sender', a.fromHeaderAddress ? `unusable From address "${a.fromHeaderAddress}"` : 'no From header');
  if (isOurAddress(cfg, a.from.address) && !skip.has('own_mail')) return hold('own_mail', `From is our own address ${a.from.address}`);
  if (facts.breaker && !skip.has('loop')) return hold('loop', facts.breaker);
  if (facts.quota && !skip.has('sender_quota')) return hold('sender_quota', facts.quota);

  let user = facts.sender;
  if (!user) {
    if (cfg.REGISTRATION === 'closed' && !skip.has('unknown_sender')) return hold('unknown_sender', a.from.address);
    user = await createSender(trx, cfg, a);
  }

  const { match, token } = await findThread(trx, cfg, a, row.rcpt_to, user);
  if (!match) {
    // A new ticket "from staff" is shown to other staff as their colleague's: same rule as replies.
    if (user.role === 'staff') {
      const refused = await checkStaffIdentity(ctx, trx, row, a, user, token, skip, null);
      if (refused) return refused;
    }
    return newTicket(trx, cfg, row, a, user, skip, null);
  }
  const ticket = (await lockTicket(trx, match.ticketId))!;
  if (user.role === 'staff') return staffReply(ctx, trx, row, a, user, ticket, token, skip);
  const role = await participantRole(trx, ticket.id, user.id);
  if (!role && !skip.has('not_participant'))
    return hold('not_participant', `ticket ${ticket.id} (matched by ${match.evidence})`, ticket.id);
  // Someone else's reply address or Message-ID: evidence about them, not about this sender.
  if (!match.tied && !skip.has('unbound_evidence'))
    return hold('unbound_evidence', `ticket ${ticket.id} matched by a ${match.evidence} issued to someone else`, ticket.id);
  if (ticket.status === 'closed') return newTicket(trx, cfg, row, a, user, skip, ticket.id);
  return customerReply(trx, cfg, row, a, user, ticket, skip);
}
