import { type Kysely, sql } from 'kysely';

/**
 * The per-user upload quota (UPLOAD_DAILY_BYTES) sums the files a user
 * attached to portal comments in the last 24 hours on every upload: this
 * index keeps that a short range scan of the user's own recent portal
 * messages instead of a scan of all messages.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX messages_portal_author_idx ON messages (author_id, created_at) WHERE via = 'portal'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX IF EXISTS messages_portal_author_idx`.execute(db);
}
