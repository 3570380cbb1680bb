import { sql } from 'kysely';
import type { Db, ParticipantRole, UserRow } from '../database.js';

/** Who is on a ticket (requester, CCs) and with which role: reads and writes of ticket_participants. */

/** The ticket's participants (requester and CCs) as users, by id. */
export async function listParticipantUsers(db: Db, ticketId: number): Promise<UserRow[]> {
  return db
    .selectFrom('ticket_participants as p')
    .innerJoin('users as u', 'u.id', 'p.user_id')
    .selectAll('u')
    .where('p.ticket_id', '=', ticketId)
    .orderBy('u.id')
    .execute();
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

export interface TicketParticipant {
  ticketId: number;
  userId: number;
  role: ParticipantRole;
  /** Lower-cased. */
  email: string;
}

/** Every participant of these tickets, with their address. */
export async function listTicketParticipants(db: Db, ticketIds: number[]): Promise<TicketParticipant[]> {
  if (ticketIds.length === 0) return [];
  const rows = await db
    .selectFrom('ticket_participants as p')
    .innerJoin('users as u', 'u.id', 'p.user_id')
    .select(['p.ticket_id', 'p.user_id', 'p.role', sql<string>`lower(u.email)`.as('email')])
    .where('p.ticket_id', '=', sql<number>`ANY(${[...new Set(ticketIds)]}::bigint[])`)
    .execute();
  return rows.map((r) => ({ ticketId: Number(r.ticket_id), userId: Number(r.user_id), role: r.role, email: r.email }));
}

/** Adds CCs to tickets in one statement; an existing participant (the requester above all) keeps its role. */
export async function addCcParticipants(db: Db, ccs: Array<{ ticketId: number; userId: number }>): Promise<void> {
  if (ccs.length === 0) return;
  await sql`
    INSERT INTO ticket_participants (ticket_id, user_id, role)
    SELECT t, u, 'cc' FROM unnest(${ccs.map((c) => c.ticketId)}::bigint[], ${ccs.map((c) => c.userId)}::bigint[]) AS x(t, u)
    ON CONFLICT (ticket_id, user_id) DO NOTHING
  `.execute(db);
}
