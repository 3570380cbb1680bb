import { type Kysely, sql } from 'kysely';

/**
 * Portal lists: staff's "All requests" tab reads the newest activity across
 * every ticket. Without this index that is a sort of the whole table per page
 * view; with it, an index scan that stops after one page. (Customers' own
 * lists already use tickets_requester_idx and ticket_participants_user_idx.)
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX tickets_updated_idx ON tickets (updated_at DESC, id DESC)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX IF EXISTS tickets_updated_idx`.execute(db);
}
