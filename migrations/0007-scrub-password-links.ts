import { type Kysely, sql } from 'kysely';

// Set-password mails used to keep the raw link (and so a usable token) in
// outbound_mails.payload forever. Tokens are sealed now and dropped once
// sent; this removes the raw links already stored. Queued rows keep theirs
// until they are sent (the deliverer drops it then), or their user could
// never get the mail.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`UPDATE outbound_mails SET payload = payload - 'url' WHERE kind = 'password_setup' AND status <> 'queued' AND payload ? 'url'`.execute(
    db,
  );
}

export async function down(): Promise<void> {
  // The links are gone for good, which is the point.
}
