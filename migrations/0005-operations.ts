import { type Kysely, sql } from 'kysely';

// /metrics counts failed outbound mail by kind at every scrape; without this
// partial index that would be a scan of the whole outbox.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX outbound_mails_failed_idx ON outbound_mails (kind) WHERE status = 'failed'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX IF EXISTS outbound_mails_failed_idx`.execute(db);
}
