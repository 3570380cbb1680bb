import { sql } from 'kysely';
import { normalizeMessageId } from '../../core/message-id.js';
import type { Db, MessageRow, Visibility } from '../database.js';
import { touchTicket } from './tickets.js';

/**
 * Which message of a ticket a mail answered, and who answered what since:
 * the facts behind collision detection (src/jobs/inbound/collision.ts) and
 * the FYI to other agents (src/mail/notify.ts).
 */

/**
 * The ticket message behind the first of `messageIds` (In-Reply-To first, then References newest first)
 * that we know: one of our outbound mails (the message it was about) or a stored mail of the ticket.
 */
export async function referencedMessageId(db: Db, ticketId: number, messageIds: string[]): Promise<number | null> {
  const ids = [...new Set(messageIds.map(storedMessageId))].filter(Boolean);
  if (ids.length === 0) return null;
  const { rows } = await sql<{ id: number }>`
    SELECT x.id FROM (
      SELECT o.ticket_message_id AS id, o.message_id AS ref FROM outbound_mails o
       WHERE o.message_id = ANY(${ids}::text[]) AND o.ticket_id = ${ticketId} AND o.ticket_message_id IS NOT NULL
      UNION ALL
      SELECT m.id, m.message_id FROM messages m WHERE m.message_id = ANY(${ids}::text[]) AND m.ticket_id = ${ticketId}
    ) x ORDER BY array_position(${ids}::text[], x.ref), x.id DESC LIMIT 1
  `.execute(db);
  return rows[0] ? Number(rows[0].id) : null;
}

/** The newest public message on the ticket written by a non-staff author (before `beforeId`, when given). */
export async function latestCustomerMessageId(db: Db, ticketId: number, beforeId?: number): Promise<number | null> {
  let q = db
    .selectFrom('messages as m')
    .innerJoin('users as u', 'u.id', 'm.author_id')
    .select('m.id')
    .where('m.ticket_id', '=', ticketId)
    .where('m.visibility', '=', 'public')
    .where('u.role', '!=', 'staff');
  if (beforeId !== undefined) q = q.where('m.id', '<', beforeId);
  const row = await q.orderBy('m.id', 'desc').limit(1).executeTakeFirst();
  return row?.id ?? null;
}

/** The newest public reply by another staff member after message `afterId`, written within the last `windowMs`. */
export async function otherStaffReplySince(
  db: Db,
  q: { ticketId: number; afterId: number; authorId: number; windowMs: number },
): Promise<number | null> {
  const row = await db
    .selectFrom('messages as m')
    .innerJoin('users as u', 'u.id', 'm.author_id')
    .select('m.id')
    .where('m.ticket_id', '=', q.ticketId)
    .where('m.visibility', '=', 'public')
    .where('u.role', '=', 'staff')
    .where('m.author_id', '!=', q.authorId)
    .where('m.id', '>', q.afterId)
    .where('m.created_at', '>', sql<Date>`now() - make_interval(secs => ${q.windowMs / 1000})`)
    .orderBy('m.id', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row?.id ?? null;
}

/** The latest public message of each ticket: lifecycle mails thread under it like any ticket update. */
export async function latestPublicMessageIds(db: Db, ticketIds: number[]): Promise<Map<number, number>> {
  if (ticketIds.length === 0) return new Map();
  const rows = await db
    .selectFrom('messages')
    .select(['ticket_id', sql<string>`max(id)`.as('id')])
    .where('ticket_id', 'in', ticketIds)
    .where('visibility', '=', 'public')
    .groupBy('ticket_id')
    .execute();
  return new Map(rows.map((r) => [r.ticket_id, Number(r.id)]));
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

/** One message's Message-ID lookup: its In-Reply-To and References, and who sent it. */
export interface MessageIdLookup {
  key: number;
  messageIds: string[];
  senderId: number | null;
  senderEmail: string;
}

/**
 * The ticket a stored RFC Message-ID belongs to (an inbound message's or one
 * of our outbound mails'), for many messages at once, and whether that id is
 * evidence *from this sender*: our mail was sent to the sender's address, or
 * the stored message is the sender's own or went to a ticket the sender takes
 * part in. Tied matches first, then the oldest: a later copy of an id
 * (planted by someone else) never wins over the original.
 */
export async function findTicketsByMessageIds(
  db: Db,
  lookups: MessageIdLookup[],
): Promise<Map<number, { ticketId: number; tied: boolean }>> {
  const out = new Map<number, { ticketId: number; tied: boolean }>();
  const pairs = lookups.flatMap((l) => [...new Set(l.messageIds.map(storedMessageId))].filter(Boolean).map((id) => ({ l, id })));
  if (pairs.length === 0) return out;
  const { rows } = await sql<{ k: number; ticket_id: number; tied: boolean }>`
    WITH input AS (
      SELECT * FROM unnest(${pairs.map((p) => p.l.key)}::bigint[], ${pairs.map((p) => p.id)}::text[],
                           ${pairs.map((p) => p.l.senderId)}::bigint[], ${pairs.map((p) => p.l.senderEmail.toLowerCase())}::text[])
        AS i(k, mid, sender_id, sender_email)
    )
    SELECT DISTINCT ON (k) k::int AS k, ticket_id::int AS ticket_id, tied FROM (
      SELECT i.k, m.ticket_id, m.id AS ord, 0 AS src,
             coalesce(m.author_id = i.sender_id OR EXISTS (
               SELECT 1 FROM ticket_participants p WHERE p.ticket_id = m.ticket_id AND p.user_id = i.sender_id), false) AS tied
        FROM input i JOIN messages m ON m.message_id = i.mid
      UNION ALL
      SELECT i.k, o.ticket_id, o.id, 1, lower(o.recipient) = i.sender_email
        FROM input i JOIN outbound_mails o ON o.message_id = i.mid AND o.ticket_id IS NOT NULL
    ) x ORDER BY k, tied DESC, src, ord
  `.execute(db);
  for (const r of rows) out.set(Number(r.k), { ticketId: Number(r.ticket_id), tied: r.tied });
  return out;
}
