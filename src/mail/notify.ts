import type { Config } from '../config.js';
import type { Db } from '../db/database.js';
import { listNotifiedStaff } from '../db/queries/outbound-mails.js';
import { listParticipantUsers } from '../db/queries/ticket-participants.js';
import { getTicketPeople } from '../db/queries/tickets.js';
import { getUser, listFollowingStaff, listStaffRefs, type UserRef } from '../db/queries/users.js';
import { isOurAddress, isValidEmail } from '../core/address.js';
import { insertOutboundMails, type OutboxInsert } from './outbox.js';

/**
 * Who gets mail when something happens on a ticket. Called inside the
 * transaction that made the change, by the inbound job and by the portal;
 * returns the outbox ids to enqueue after commit.
 *
 *  - new ticket: an acknowledgement to a customer requester, a notification
 *    to every staff account (or the assignee);
 *  - public message by a customer: staff notified, the other participants
 *    (requester, CCs) get a ticket update;
 *  - public message by staff: the requester and CCs get a ticket update; the
 *    other agents who were notified about the customer message it answers get
 *    an FYI (threaded under that notification), so nobody answers twice;
 *  - internal note: the other staff accounts, never anyone else;
 *  - a customer marks the request solved (portal): staff notified.
 * Never the author back (except the acknowledgement, which is *for* the
 * author), never our own addresses, and no ticket update to a participant
 * the author's mail was addressed to directly (To/Cc): they have that text. Rate limits and loop breakers are
 * applied when the mail is sent (src/mail/breakers.ts), so a suppressed mail
 * stays visible in the outbox with its reason.
 *
 * The caller guarantees machine mail (auto-replies, bounces, lists) never
 * gets here; as a second line we still never acknowledge role addresses that
 * only machines write from.
 */
export type TicketEvent =
  | {
      type: 'ticket_created';
      ticketId: number;
      messageId: number;
      authorId: number;
      directTo?: string[];
      /** Portal requests: the CCs were typed into a form, not written to, so they have not seen the text yet. */
      informCcs?: boolean;
    }
  | { type: 'message_added'; ticketId: number; messageId: number; authorId: number; visibility: 'public' | 'internal'; directTo?: string[] }
  | { type: 'customer_solved'; ticketId: number; authorId: number };

/** The addresses an inbound mail was written to (To and Cc): they hold its text already. */
export function directRecipients(mail: { to: Array<{ address: string }>; cc: Array<{ address: string }> }): string[] {
  return [...mail.to, ...mail.cc].map((m) => m.address.toLowerCase());
}

type NotifyConfig = Pick<Config, 'SECRET_KEY' | 'MAIL_DOMAIN' | 'SUPPORT_ADDRESSES'>;

const MACHINE_LOCAL_PART = /^(?:no-?reply|do-?not-?reply|mailer-daemon|postmaster|bounces?|auto-?reply|notifications?)(?:[+._-].*)?$/i;

/** Addresses nobody reads: acknowledging them is pure backscatter. */
export function isMachineAddress(email: string): boolean {
  return MACHINE_LOCAL_PART.test(email.slice(0, email.lastIndexOf('@')));
}

type Recipient = UserRef;
type MailKind = 'acknowledgement' | 'staff_notification' | 'ticket_update';
type Planned = { kind: MailKind; to: Recipient; payload: OutboxInsert<MailKind>['payload'] };

/** Outbox rows for the planned mails: never the author back (but the acknowledgement), each recipient once, never our own addresses. */
function outboxRows(config: NotifyConfig, event: TicketEvent, planned: Planned[]): Array<OutboxInsert<MailKind>> {
  const mailed = new Set<number>();
  const direct = new Set('directTo' in event ? event.directTo : []);
  const rows: Array<OutboxInsert<MailKind>> = [];
  for (const { kind, to, payload } of planned) {
    if (kind !== 'acknowledgement' && to.id === event.authorId) continue;
    // Only participants' updates: a Cc header is the sender's claim, and must not be a way to keep staff from hearing of a mail.
    if (kind === 'ticket_update' && direct.has(to.email.toLowerCase())) continue;
    if (mailed.has(to.id) || !isValidEmail(to.email) || isOurAddress(config, to.email)) continue;
    mailed.add(to.id);
    const ticketMessageId = 'messageId' in event ? event.messageId : null;
    rows.push({ kind, recipient: to.email, userId: to.id, locale: to.locale, ticketId: event.ticketId, ticketMessageId, payload });
  }
  return rows;
}

/** The mails of a new ticket whose requester wrote it: an acknowledgement (to a customer) and the staff notifications. */
export function ticketCreatedMails(
  config: NotifyConfig,
  event: TicketEvent & { type: 'ticket_created' },
  author: Recipient,
  requesterId: number,
  staff: Recipient[],
  ccs: Recipient[] = [],
) {
  const planned: Planned[] = [];
  if (author.id === requesterId && author.role === 'customer' && !isMachineAddress(author.email))
    planned.push({ kind: 'acknowledgement', to: author, payload: {} });
  for (const s of staff) planned.push({ kind: 'staff_notification', to: s, payload: { event: 'ticket_created' } });
  // CCs on the first mail already have it: they were addressed by the author. A portal request's CCs get an update.
  for (const cc of ccs) if (cc.role !== 'staff') planned.push({ kind: 'ticket_update', to: cc, payload: {} });
  return outboxRows(config, event, planned);
}

export async function queueTicketMails(db: Db, config: NotifyConfig, event: TicketEvent): Promise<number[]> {
  const ticket = await getTicketPeople(db, event.ticketId);
  const author = await getUser(db, event.authorId);

  // Assigned: the assignee, plus staff who follow the ticket (CC'd, or wrote on it); unassigned: every agent.
  const staffTargets = async (): Promise<Recipient[]> => {
    if (ticket.assignee_id !== null) {
      const following = await listFollowingStaff(db, ticket.id, ticket.assignee_id);
      if (following.some((u) => u.id === ticket.assignee_id)) return following;
    }
    return listStaffRefs(db);
  };

  const participants = () => listParticipantUsers(db, ticket.id);

  if (event.type === 'ticket_created') {
    const ccs = event.informCcs ? (await participants()).filter((p) => p.id !== ticket.requester_id) : [];
    return insertOutboundMails(db, config, ticketCreatedMails(config, event, author, ticket.requester_id, await staffTargets(), ccs));
  }
  if (event.type === 'customer_solved') {
    const planned: Planned[] = (await staffTargets()).map((s) => ({
      kind: 'staff_notification',
      to: s,
      payload: { event: 'customer_solved', by: { name: author.name, email: author.email } },
    }));
    return insertOutboundMails(db, config, outboxRows(config, event, planned));
  }
  if (event.visibility === 'internal') {
    // A note is for the team: every other staff account, whoever the assignee is.
    const planned: Planned[] = (await listStaffRefs(db)).map((s) => ({
      kind: 'staff_notification',
      to: s,
      payload: { event: 'internal_note' },
    }));
    return insertOutboundMails(db, config, outboxRows(config, event, planned));
  }

  const planned: Planned[] = [];
  if (author.role !== 'staff') {
    for (const staff of await staffTargets()) planned.push({ kind: 'staff_notification', to: staff, payload: { event: 'customer_reply' } });
  } else {
    for (const staff of await listNotifiedStaff(db, ticket.id, event.messageId))
      planned.push({ kind: 'staff_notification', to: staff, payload: { event: 'staff_reply' } });
  }
  for (const p of await participants()) {
    if (p.role === 'staff') continue; // staff follow tickets through notifications, not customer updates
    planned.push({ kind: 'ticket_update', to: p, payload: {} });
  }
  return insertOutboundMails(db, config, outboxRows(config, event, planned));
}
