import type { Db, UserRow } from '../database.js';

/**
 * Reads of ticket_participants. The participant writes (addParticipant,
 * removeCc, ...) are still in tickets.ts, next to createTicket which uses them.
 */

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
