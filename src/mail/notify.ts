import { sql } from 'kysely';
import type { Config } from '../config.js';
import type { Db } from '../db/database.js';
import type { UserRef } from '../db/queries/users.js';
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

/** Every staff account, for notifications on tickets without an assignee. */
export function listStaffRecipients(db: Db): Promise<Recipient[]> {
  return db.selectFrom('users').select(['id', 'email', 'role', 'locale']).where('role', '=', 'staff').orderBy('id').execute();
}

/** The assignee and the staff who are participants of the ticket or wrote on it. */
export function listFollowingStaff(db: Db, ticketId: number, assigneeId: number): Promise<Recipient[]> {
  return db
    .selectFrom('users')
    .select(['id', 'email', 'role', 'locale'])
    .where('role', '=', 'staff')
    .where((eb) =>
      eb.or([
        eb('id', '=', assigneeId),
        eb('id', 'in', eb.selectFrom('ticket_participants').select('user_id').where('ticket_id', '=', ticketId)),
        eb('id', 'in', eb.selectFrom('messages').select('author_id').where('ticket_id', '=', ticketId)),
      ]),
    )
    .orderBy('id')
    .execute();
}

/**
 * The staff notified about the newest customer message before `beforeMessageId`
 * (a new ticket or a customer reply): the agents who may be answering it right now.
 */
export function listNotifiedStaff(db: Db, ticketId: number, beforeMessageId: number): Promise<Recipient[]> {
  return db
    .selectFrom('outbound_mails as o')
    .innerJoin('users as u', 'u.id', 'o.user_id')
    .select(['u.id', 'u.email', 'u.role', 'u.locale'])
    .distinct()
    .where('o.ticket_id', '=', ticketId)
    .where('o.kind', '=', 'staff_notification')
    .where('u.role', '=', 'staff')
    .where(sql<string>`o.payload ->> 'event'`, 'in', ['ticket_created', 'customer_reply'])
    .where('o.ticket_message_id', '=', (eb) =>
      eb
        .selectFrom('messages as m')
        .innerJoin('users as a', 'a.id', 'm.author_id')
        .select('m.id')
        .where('m.ticket_id', '=', ticketId)
        .where('m.visibility', '=', 'public')
        .where('a.role', '!=', 'staff')
        .where('m.id', '<', beforeMessageId)
        .orderBy('m.id', 'desc')
        .limit(1),
    )
    .orderBy('u.id')
    .execute();
}

export async function queueTicketMails(db: Db, config: NotifyConfig, event: TicketEvent): Promise<number[]> {
  const ticket = await db
    .selectFrom('tickets')
    .select(['id', 'requester_id', 'assignee_id'])
    .where('id', '=', event.ticketId)
    .executeTakeFirstOrThrow();
  const author = await db.selectFrom('users').selectAll().where('id', '=', event.authorId).executeTakeFirstOrThrow();

  // Assigned: the assignee, plus staff who follow the ticket (CC'd, or wrote on it); unassigned: every agent.
  const staffTargets = async (): Promise<Recipient[]> => {
    if (ticket.assignee_id !== null) {
      const following = await listFollowingStaff(db, ticket.id, ticket.assignee_id);
      if (following.some((u) => u.id === ticket.assignee_id)) return following;
    }
    return listStaffRecipients(db);
  };

  const participants = () =>
    db
      .selectFrom('ticket_participants as p')
      .innerJoin('users as u', 'u.id', 'p.user_id')
      .selectAll('u')
      .where('p.ticket_id', '=', ticket.id)
      .orderBy('u.id')
      .execute();

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
    const planned: Planned[] = (await listStaffRecipients(db)).map((s) => ({
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
