import { sql } from 'kysely';
import type { Db } from '../database.js';
import { storedMessageId } from './tickets.js';

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
