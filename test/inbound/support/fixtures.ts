import type Mail from 'nodemailer/lib/mailer';
import type { Db, TicketStatus } from '../../../src/db/database.js';
import { createUser } from '../../../src/db/queries/users.js';
import { insertOutboundMail } from '../../../src/mail/outbox.js';
import { makeReplyAddress } from '../../../src/mail/tokens.js';
import { deliver, uid } from './smtp.js';

export const SECRET = 'test-secret-key-0123456789abcdef0123456789';
export const CONFIG = { SECRET_KEY: SECRET, MAIL_DOMAIN: 'help.test' };

export const replyAddress = (ticketId: number, userId: number) => makeReplyAddress(SECRET, 'support', 'help.test', { ticketId, userId });

export interface Opened {
  ticketId: number;
  requesterId: number;
  email: string;
  messageId: string;
}

/** Opens a ticket the way a customer does: a mail to support through the real listener. */
export async function openTicket(db: Db, port: number, extra: Partial<Mail.Options> = {}): Promise<Opened> {
  const email = `cust-${uid()}@customer.example`;
  const messageId = `<first.${uid()}@customer.example>`;
  const row = await deliver(db, port, {
    from: `Carol <${email}>`,
    to: 'support@help.test',
    subject: 'Printer on fire',
    text: 'Help!',
    messageId,
    ...extra,
  });
  if (row.status !== 'processed' || !row.ticket_id) throw new Error(`ticket not opened: ${row.status} ${row.reason} ${row.error}`);
  const t = await db.selectFrom('tickets').select(['id', 'requester_id']).where('id', '=', row.ticket_id).executeTakeFirstOrThrow();
  return { ticketId: t.id, requesterId: t.requester_id, email, messageId };
}

export async function setStatus(db: Db, ticketId: number, status: TicketStatus): Promise<void> {
  await db.updateTable('tickets').set({ status }).where('id', '=', ticketId).execute();
}

export async function ticket(db: Db, id: number) {
  return db.selectFrom('tickets').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
}

export async function messagesOf(db: Db, ticketId: number) {
  return db.selectFrom('messages').selectAll().where('ticket_id', '=', ticketId).orderBy('id').execute();
}

export async function outboxOf(db: Db, ticketId: number) {
  return db
    .selectFrom('outbound_mails')
    .select(['id', 'kind', 'recipient', 'ticket_message_id'])
    .where('ticket_id', '=', ticketId)
    .orderBy('id')
    .execute();
}

export async function makeStaff(db: Db) {
  return createUser(db, { email: `agent-${uid()}@staff.example`, name: 'Agent', role: 'staff' });
}

/** One of our outbound mails on a ticket, as the sender would have stored it. */
export async function ourOutboundMail(db: Db, ticketId: number, userId: number, recipient: string) {
  return insertOutboundMail(db, CONFIG, { kind: 'ticket_update', recipient, userId, locale: 'en', ticketId, payload: {} });
}
