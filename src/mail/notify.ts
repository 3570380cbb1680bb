import type { Config } from '../config.js';
import type { Db, UserRow } from '../db/database.js';
import { insertOutboundMail } from './outbox.js';

/**
 * Who gets mail when something happens on a ticket. Called inside the
 * transaction that made the change, by the inbound job and by the portal;
 * returns the outbox ids to enqueue after commit.
 */
export type TicketEvent =
  | { type: 'ticket_created'; ticketId: number; messageId: number; authorId: number }
  | { type: 'message_added'; ticketId: number; messageId: number; authorId: number; visibility: 'public' | 'internal' };

type NotifyConfig = Pick<Config, 'SECRET_KEY' | 'MAIL_DOMAIN' | 'SUPPORT_ADDRESSES'>;

export async function queueTicketMails(db: Db, config: NotifyConfig, event: TicketEvent): Promise<number[]> {
  const ticket = await db
    .selectFrom('tickets')
    .select(['id', 'requester_id', 'assignee_id'])
    .where('id', '=', event.ticketId)
    .executeTakeFirstOrThrow();
  const author = await db.selectFrom('users').selectAll().where('id', '=', event.authorId).executeTakeFirstOrThrow();
  const ids: number[] = [];
  const ourAddresses = new Set(config.SUPPORT_ADDRESSES);
  const send = async (kind: 'acknowledgement' | 'staff_notification' | 'ticket_update', to: UserRow, payload: object) => {
    // Never mail the author back (the acknowledgement is the one mail *for* the author),
    // and never mail ourselves: that is a loop in one step.
    if (kind !== 'acknowledgement' && to.id === author.id) return;
    if (ourAddresses.has(to.email) || to.email.endsWith(`@${config.MAIL_DOMAIN}`)) return;
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
      return db.selectFrom('users').selectAll().where('id', '=', ticket.assignee_id).execute();
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
    if (author.id === ticket.requester_id && author.role === 'customer') {
      await send('acknowledgement', author, {});
    }
    for (const staff of await staffTargets()) await send('staff_notification', staff, { event: 'ticket_created' });
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
