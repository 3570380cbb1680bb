import { sql } from 'kysely';
import { normalizeMessageId } from '../../core/message-id.js';
import type { CsatRating, Db, MessageRow, ParticipantRole, TicketPriority, TicketRow, TicketStatus, Visibility } from '../database.js';

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

/** Who a ticket's mail is about: its requester and assignee (throws when the ticket is gone). */
export async function getTicketPeople(db: Db, id: number): Promise<Pick<TicketRow, 'id' | 'requester_id' | 'assignee_id'>> {
  return db.selectFrom('tickets').select(['id', 'requester_id', 'assignee_id']).where('id', '=', id).executeTakeFirstOrThrow();
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

/** Bumps updated_at so "newest activity first" lists see the change. */
export async function touchTicket(db: Db, ticketId: number): Promise<void> {
  await db
    .updateTable('tickets')
    .set({ updated_at: sql`now()` as never })
    .where('id', '=', ticketId)
    .execute();
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
export async function findTicketByMessageIds(
  db: Db,
  messageIds: string[],
  sender: { id: number; email: string },
): Promise<{ ticketId: number; tied: boolean } | null> {
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
