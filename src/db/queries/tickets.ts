import { sql } from 'kysely';
import { normalizeMessageId } from '../../mail/message-id.js';
import type { Db, MessageRow, ParticipantRole, TicketRow, TicketStatus, Visibility } from '../database.js';

/**
 * Ticket, participant and message writes shared by the inbound job, staff
 * commands and the portal. Every function takes `db` or a transaction first.
 */

export interface NewTicket {
  subject: string;
  requesterId: number;
  via: 'email' | 'portal';
  followUpOf?: number | null;
}

export async function createTicket(db: Db, t: NewTicket): Promise<TicketRow> {
  const ticket = await db
    .insertInto('tickets')
    .values({
      subject: t.subject,
      requester_id: t.requesterId,
      via: t.via,
      follow_up_of: t.followUpOf ?? null,
      status: 'new',
      updated_at: sql`now()` as never,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  await addParticipant(db, ticket.id, t.requesterId, 'requester');
  return ticket;
}

export async function findTicket(db: Db, id: number): Promise<TicketRow | undefined> {
  return db.selectFrom('tickets').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Locks the ticket row for the rest of the transaction (status changes, message appends). */
export async function lockTicket(db: Db, id: number): Promise<TicketRow | undefined> {
  return db.selectFrom('tickets').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
}

/** Adds a participant; an existing requester is never demoted to cc. Returns true when newly added. */
export async function addParticipant(db: Db, ticketId: number, userId: number, role: ParticipantRole): Promise<boolean> {
  const res = await db
    .insertInto('ticket_participants')
    .values({ ticket_id: ticketId, user_id: userId, role })
    .onConflict((oc) => oc.columns(['ticket_id', 'user_id']).doNothing())
    .executeTakeFirst();
  return Number(res.numInsertedOrUpdatedRows ?? 0) > 0;
}

/** Removes a cc (never the requester). Returns true when a row was removed. */
export async function removeCc(db: Db, ticketId: number, userId: number): Promise<boolean> {
  const res = await db
    .deleteFrom('ticket_participants')
    .where('ticket_id', '=', ticketId)
    .where('user_id', '=', userId)
    .where('role', '=', 'cc')
    .executeTakeFirst();
  return Number(res.numDeletedRows) > 0;
}

export async function participantRole(db: Db, ticketId: number, userId: number): Promise<ParticipantRole | null> {
  const row = await db
    .selectFrom('ticket_participants')
    .select('role')
    .where('ticket_id', '=', ticketId)
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return row?.role ?? null;
}

export async function countCcs(db: Db, ticketId: number): Promise<number> {
  const row = await db
    .selectFrom('ticket_participants')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('ticket_id', '=', ticketId)
    .where('role', '=', 'cc')
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export async function setTicketStatus(db: Db, ticketId: number, status: TicketStatus): Promise<void> {
  await db.updateTable('tickets').set({ status, updated_at: sql`now()` as never }).where('id', '=', ticketId).execute();
}

/** Bumps updated_at so "newest activity first" lists see the change. */
export async function touchTicket(db: Db, ticketId: number): Promise<void> {
  await db.updateTable('tickets').set({ updated_at: sql`now()` as never }).where('id', '=', ticketId).execute();
}

/** Message-IDs are stored bare and lower-cased, so threading lookups hit the plain index. */
export const storedMessageId = normalizeMessageId;

export interface NewMessage {
  ticketId: number;
  authorId: number;
  visibility: Visibility;
  via: 'email' | 'portal' | 'system';
  bodyText: string;
  bodyHtml?: string | null;
  originalText?: string | null;
  originalHtml?: string | null;
  messageId?: string | null;
  inboundMessageId?: number | null;
}

export async function addMessage(db: Db, m: NewMessage): Promise<MessageRow> {
  const row = await db
    .insertInto('messages')
    .values({
      ticket_id: m.ticketId,
      author_id: m.authorId,
      visibility: m.visibility,
      via: m.via,
      body_text: m.bodyText,
      body_html: m.bodyHtml ?? null,
      original_text: m.originalText ?? null,
      original_html: m.originalHtml ?? null,
      message_id: m.messageId ? storedMessageId(m.messageId) : null,
      inbound_message_id: m.inboundMessageId ?? null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  await touchTicket(db, m.ticketId);
  return row;
}

export interface NewAttachment {
  messageId: number;
  filename: string;
  contentType: string;
  content: Buffer;
  sha256: string;
  contentId?: string | null;
  inline?: boolean;
}

export async function addAttachment(db: Db, a: NewAttachment): Promise<number> {
  const row = await db
    .insertInto('attachments')
    .values({
      message_id: a.messageId,
      filename: a.filename,
      content_type: a.contentType,
      size: a.content.length,
      sha256: a.sha256,
      content_id: a.contentId ?? null,
      inline: a.inline ?? false,
      content: a.content,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

/**
 * The ticket a stored RFC Message-ID belongs to (an inbound message's or one
 * of our outbound mails'), and whether that id is evidence *from this sender*:
 * our mail was sent to the sender's address, or the stored message is the
 * sender's own or went to a ticket the sender takes part in. Tied matches
 * first, then the oldest: a later copy of an id (planted by someone else)
 * never wins over the original.
 */
export async function findTicketByMessageIds(db: Db, messageIds: string[], sender: { id: number; email: string }): Promise<{ ticketId: number; tied: boolean } | null> {
  if (messageIds.length === 0) return null;
  const ids = [...new Set(messageIds.map(storedMessageId))];
  const { rows } = await sql<{ ticket_id: number; tied: boolean }>`
    SELECT ticket_id, tied FROM (
      SELECT m.ticket_id, m.id AS ord, 0 AS src,
             (m.author_id = ${sender.id} OR EXISTS (
               SELECT 1 FROM ticket_participants p WHERE p.ticket_id = m.ticket_id AND p.user_id = ${sender.id})) AS tied
        FROM messages m WHERE m.message_id IN (${sql.join(ids)})
      UNION ALL
      SELECT o.ticket_id, o.id, 1, lower(o.recipient) = ${sender.email.toLowerCase()}
        FROM outbound_mails o WHERE o.message_id IN (${sql.join(ids)}) AND o.ticket_id IS NOT NULL
    ) x ORDER BY tied DESC, src, ord LIMIT 1
  `.execute(db);
  const r = rows[0];
  return r ? { ticketId: Number(r.ticket_id), tied: r.tied } : null;
}
