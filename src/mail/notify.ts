import type { Config } from '../config.js';
import type { Db, UserRow } from '../db/database.js';
import { isOurAddress, isValidEmail } from './address.js';
import { insertOutboundMail } from './outbox.js';

/**
 * Who gets mail when something happens on a ticket. Called inside the
 * transaction that made the change, by the inbound job and by the portal;
 * returns the outbox ids to enqueue after commit.
 *
 *  - new ticket: an acknowledgement to a customer requester, a notification
 *    to every staff account (or the assignee);
 *  - public message by a customer: staff notified, the other participants
 *    (requester, CCs) get a ticket update;
 *  - public message by staff: the requester and CCs get a ticket update;
 *  - internal note: nobody outside staff is mailed.
 * Never the author back (except the acknowledgement, which is *for* the
 * author), never our own addresses. Rate limits and loop breakers are
 * applied when the mail is sent (src/mail/breakers.ts), so a suppressed mail
 * stays visible in the outbox with its reason.
 *
 * The caller guarantees machine mail (auto-replies, bounces, lists) never
 * gets here; as a second line we still never acknowledge role addresses that
 * only machines write from.
 */
export type TicketEvent =
  | { type: 'ticket_created'; ticketId: number; messageId: number; authorId: number }
  | { type: 'message_added'; ticketId: number; messageId: number; authorId: number; visibility: 'public' | 'internal' };

type NotifyConfig = Pick<Config, 'SECRET_KEY' | 'MAIL_DOMAIN' | 'SUPPORT_ADDRESSES'>;

const MACHINE_LOCAL_PART = /^(?:no-?reply|do-?not-?reply|mailer-daemon|postmaster|bounces?|auto-?reply|notifications?)(?:[+._-].*)?$/i;

/** Addresses nobody reads: acknowledging them is pure backscatter. */
export function isMachineAddress(email: string): boolean {
  return MACHINE_LOCAL_PART.test(email.slice(0, email.lastIndexOf('@')));
}

export async function queueTicketMails(db: Db, config: NotifyConfig, event: TicketEvent): Promise<number[]> {
  const ticket = await db
    .selectFrom('tickets')
    .select(['id', 'requester_id', 'assignee_id'])
    .where('id', '=', event.ticketId)
    .executeTakeFirstOrThrow();
  const author = await db.selectFrom('users').selectAll().where('id', '=', event.authorId).executeTakeFirstOrThrow();
  const ids: number[] = [];
  const mailed = new Set<number>();

  const send = async (kind: 'acknowledgement' | 'staff_notification' | 'ticket_update', to: UserRow, payload: object) => {
    if (kind !== 'acknowledgement' && to.id === author.id) return;
    if (mailed.has(to.id) || !isValidEmail(to.email) || isOurAddress(config, to.email)) return;
    mailed.add(to.id);
    const row = await insertOutboundMail(db, config, {
      kind,
      recipient: to.email,
      userId: to.id,
      locale: to.locale,
      ticketId: ticket.id,
      ticketMessageId: event.messageId,
      payload: payload as never,
    });
    ids.push(row.id);
  };

  const staffTargets = async (): Promise<UserRow[]> => {
    if (ticket.assignee_id !== null) {
      const assignee = await db.selectFrom('users').selectAll().where('id', '=', ticket.assignee_id).where('role', '=', 'staff').execute();
      if (assignee.length > 0) return assignee;
    }
    return db.selectFrom('users').selectAll().where('role', '=', 'staff').orderBy('id').execute();
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
    if (author.id === ticket.requester_id && author.role === 'customer' && !isMachineAddress(author.email)) {
      await send('acknowledgement', author, {});
    }
    for (const staff of await staffTargets()) await send('staff_notification', staff, { event: 'ticket_created' });
    // CCs on the first mail already have it: they were addressed by the author.
    return ids;
  }

  if (event.visibility === 'internal') return ids;

  if (author.role !== 'staff') {
    for (const staff of await staffTargets()) await send('staff_notification', staff, { event: 'customer_reply' });
  }
  for (const p of await participants()) {
    if (p.role === 'staff') continue; // staff follow tickets through notifications, not customer updates
    await send('ticket_update', p, {});
  }
  return ids;
}
