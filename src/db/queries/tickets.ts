import { sql } from 'kysely';
import { addParticipant } from './ticket-participants.js';
import { normalizeMessageId } from '../../core/message-id.js';
import type { CsatRating, Db, TicketPriority, TicketRow, TicketStatus } from '../database.js';

/**
 * Ticket rows: creation (one writer for email tickets, createEmailTickets),
 * status, priority, assignee and the lifecycle's reads. Participants are in
 * ticket-participants.ts, messages in messages.ts, files in attachments.ts.
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

/** Who a ticket's mail is about: its requester and assignee (throws when the ticket is gone). */
export async function getTicketPeople(db: Db, id: number): Promise<Pick<TicketRow, 'id' | 'requester_id' | 'assignee_id'>> {
  return db.selectFrom('tickets').select(['id', 'requester_id', 'assignee_id']).where('id', '=', id).executeTakeFirstOrThrow();
}

/** The one writer of a ticket's status: a change restarts the lifecycle clock and the pending reminder. */
export async function setTicketStatus(db: Db, ticketId: number, status: TicketStatus): Promise<void> {
  await setTicketsStatus(db, [ticketId], status, null);
}

/**
 * The one reopen rule, for mail and portal alike: a customer answering is the
 * signal Zendesk reopens on, so a solved or pending ticket is open again.
 * Staff replies leave the status to staff (#status).
 */
export async function reopenOnCustomerReply(db: Db, ticket: { id: number; status: TicketStatus }): Promise<void> {
  if (ticket.status === 'solved' || ticket.status === 'pending') await setTicketStatus(db, ticket.id, 'open');
}

/**
 * Sets the status of several tickets; `at` is the moment of the change (null:
 * the database's now()), passed in by the lifecycle automations so tests can
 * move the clock instead of waiting.
 */
export async function setTicketsStatus(db: Db, ticketIds: number[], status: TicketStatus, at: Date | null): Promise<void> {
  if (ticketIds.length === 0) return;
  const moment = at ?? sql`now()`;
  await db
    .updateTable('tickets')
    .set({
      status,
      updated_at: moment as never,
      status_changed_at: sql`CASE WHEN status = ${status} THEN status_changed_at ELSE ${moment} END` as never,
      pending_reminded_at: sql`CASE WHEN status = ${status} THEN pending_reminded_at END` as never,
    })
    .where('id', 'in', ticketIds)
    .execute();
}

export async function setTicketPriority(db: Db, ticketId: number, priority: TicketPriority): Promise<void> {
  await db
    .updateTable('tickets')
    .set({ priority, updated_at: sql`now()` as never })
    .where('id', '=', ticketId)
    .execute();
}

export async function setTicketAssignee(db: Db, ticketId: number, assigneeId: number | null): Promise<void> {
  await db
    .updateTable('tickets')
    .set({ assignee_id: assigneeId, updated_at: sql`now()` as never })
    .where('id', '=', ticketId)
    .execute();
}

export interface DueTicket {
  id: number;
  requesterId: number;
}

/**
 * Tickets whose status has not changed since `before` (optionally only those
 * not yet reminded), oldest first, locked. SKIP LOCKED lets several workers
 * share the work; once a transition commits the row no longer matches, so
 * each ticket moves (and is mailed about) exactly once.
 */
export async function lockDueTickets(
  db: Db,
  q: { status: TicketStatus; before: Date; notReminded?: boolean; limit: number },
): Promise<DueTicket[]> {
  let query = db
    .selectFrom('tickets')
    .select(['id', 'requester_id'])
    .where('status', '=', q.status)
    .where('status_changed_at', '<=', q.before);
  if (q.notReminded) query = query.where('pending_reminded_at', 'is', null);
  const rows = await query.orderBy('status_changed_at').limit(q.limit).forUpdate().skipLocked().execute();
  return rows.map((r) => ({ id: r.id, requesterId: r.requester_id }));
}

export interface DigestTicket {
  id: number;
  subject: string;
  status: TicketStatus;
  priority: TicketPriority;
  createdAt: Date;
  assigneeId: number | null;
  csatRating: CsatRating | null;
  /** How many open tickets this assignee (or, for null, the queue) has in all. */
  total: number;
}

/**
 * The oldest `perList` open tickets of every assignee and of the unassigned
 * queue (assignee null), with each list's full size: one scan for the whole
 * staff digest instead of one query per agent.
 */
export async function listOpenTicketsByAssignee(db: Db, perList: number): Promise<DigestTicket[]> {
  const { rows } = await sql<{
    id: number;
    subject: string;
    status: TicketStatus;
    priority: TicketPriority;
    created_at: Date;
    assignee_id: number | null;
    csat_rating: CsatRating | null;
    total: string;
  }>`
    SELECT id, subject, status, priority, created_at, assignee_id, csat_rating, total
      FROM (SELECT t.id, t.subject, t.status, t.priority, t.created_at, t.assignee_id, t.csat_rating,
                   row_number() OVER (PARTITION BY t.assignee_id ORDER BY t.created_at, t.id) AS rn,
                   count(*) OVER (PARTITION BY t.assignee_id) AS total
              FROM tickets t
             WHERE t.status IN ('new', 'open', 'pending', 'hold')) x
     WHERE rn <= ${perList}
     ORDER BY created_at, id
  `.execute(db);
  return rows.map((r) => ({
    id: Number(r.id),
    subject: r.subject,
    status: r.status,
    priority: r.priority,
    createdAt: r.created_at,
    assigneeId: r.assignee_id === null ? null : Number(r.assignee_id),
    csatRating: r.csat_rating,
    total: Number(r.total),
  }));
}

/** Records that the one reminder of the current pending spell was queued. */
export async function markPendingReminded(db: Db, ticketIds: number[], at: Date): Promise<void> {
  if (ticketIds.length === 0) return;
  await db.updateTable('tickets').set({ pending_reminded_at: at }).where('id', 'in', ticketIds).execute();
}

/** Bumps updated_at so "newest activity first" lists see the change. */
export async function touchTicket(db: Db, ticketId: number): Promise<void> {
  await db
    .updateTable('tickets')
    .set({ updated_at: sql`now()` as never })
    .where('id', '=', ticketId)
    .execute();
}

/** Which of these tickets exist. */
export async function existingTicketIds(db: Db, ids: number[]): Promise<Set<number>> {
  const wanted = ids.filter((id) => id > 0 && Number.isSafeInteger(id));
  if (wanted.length === 0) return new Set();
  const rows = await db
    .selectFrom('tickets')
    .select('id')
    .where('id', '=', sql<number>`ANY(${wanted}::bigint[])`)
    .execute();
  return new Set(rows.map((r) => Number(r.id)));
}

/** Locks these tickets for the rest of the transaction, in id order (two batches never deadlock on them). */
export async function lockTickets(db: Db, ids: number[]): Promise<Map<number, TicketRow>> {
  if (ids.length === 0) return new Map();
  const rows = await db
    .selectFrom('tickets')
    .selectAll()
    .where('id', '=', sql<number>`ANY(${[...new Set(ids)]}::bigint[])`)
    .orderBy('id')
    .forUpdate()
    .execute();
  return new Map(rows.map((r) => [Number(r.id), r]));
}

/** A ticket opened by an inbound mail, with its requester and first message (attachments are added by the caller). */
export interface NewEmailTicket {
  inboundId: number;
  subject: string;
  requesterId: number;
  followUpOf: number | null;
  bodyText: string;
  bodyHtml: string | null;
  originalText: string | null;
  originalHtml: string | null;
  messageId: string | null;
}

/**
 * Tickets, their requesters and first messages for many inbound mails in one
 * statement: on a small machine the round trips, not the rows, are what
 * per-message writing pays for. Returns each inbound id's ticket and message.
 */
export async function createEmailTickets(db: Db, items: NewEmailTicket[]): Promise<Map<number, { ticketId: number; messageId: number }>> {
  const out = new Map<number, { ticketId: number; messageId: number }>();
  if (items.length === 0) return out;
  const col = <T>(f: (i: NewEmailTicket) => T) => items.map(f);
  const { rows } = await sql<{ inbound_id: number; ticket_id: number; message_id: number }>`
    WITH input AS MATERIALIZED (
      SELECT i.*, nextval(pg_get_serial_sequence('tickets', 'id')) AS ticket_id, nextval(pg_get_serial_sequence('messages', 'id')) AS message_row_id
      FROM unnest(${col((i) => i.inboundId)}::bigint[], ${col((i) => i.subject)}::text[], ${col((i) => i.requesterId)}::bigint[],
                  ${col((i) => i.followUpOf)}::bigint[], ${col((i) => i.bodyText)}::text[], ${col((i) => i.bodyHtml)}::text[],
                  ${col((i) => i.originalText)}::text[], ${col((i) => i.originalHtml)}::text[],
                  ${col((i) => (i.messageId ? normalizeMessageId(i.messageId) : null))}::text[])
        WITH ORDINALITY AS i(inbound_id, subject, requester_id, follow_up_of, body_text, body_html, original_text, original_html, header_message_id, ord)
      ORDER BY ord
    ), t AS (
      INSERT INTO tickets (id, subject, requester_id, via, follow_up_of, status, updated_at)
      SELECT ticket_id, subject, requester_id, 'email', follow_up_of, 'new', now() FROM input
    ), p AS (
      INSERT INTO ticket_participants (ticket_id, user_id, role) SELECT ticket_id, requester_id, 'requester' FROM input
    ), m AS (
      INSERT INTO messages (id, ticket_id, author_id, visibility, via, body_text, body_html, original_text, original_html, message_id, inbound_message_id)
      SELECT message_row_id, ticket_id, requester_id, 'public', 'email', body_text, body_html, original_text, original_html, header_message_id, inbound_id
      FROM input
    )
    SELECT inbound_id::int, ticket_id::int, message_row_id::int AS message_id FROM input
  `.execute(db);
  for (const r of rows) out.set(Number(r.inbound_id), { ticketId: Number(r.ticket_id), messageId: Number(r.message_id) });
  return out;
}
