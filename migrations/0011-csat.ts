import { type Kysely, sql } from 'kysely';

/**
 * Customer satisfaction (CSAT): the requester of a solved ticket is asked
 * once, CSAT_AFTER later, to rate the support Good or Bad (src/jobs/csat.ts).
 * `csat_sent_at` makes "once" a fact of the row, so the scheduled job sends it
 * exactly once across restarts and workers. The rating (with an optional
 * comment) lives on the ticket: a new one replaces the old until it closes.
 * Tickets already solved or closed when this runs are marked as surveyed, so
 * an upgrade does not mail every old requester at once. The survey mail is a
 * `ticket_lifecycle` mail (event `csat`): no new outbox kind, so this
 * migration leaves the kind constraint to the migrations that own it.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE tickets ADD COLUMN csat_sent_at timestamptz;
    ALTER TABLE tickets ADD COLUMN csat_rating text CHECK (csat_rating IN ('good', 'bad'));
    ALTER TABLE tickets ADD COLUMN csat_comment text;
    ALTER TABLE tickets ADD COLUMN csat_rated_at timestamptz;
    UPDATE tickets SET csat_sent_at = now() WHERE status IN ('solved', 'closed');
    -- /metrics counts ratings; the staff digest counts the last day's.
    CREATE INDEX tickets_csat_idx ON tickets (csat_rated_at) WHERE csat_rating IS NOT NULL;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DELETE FROM outbound_mails WHERE kind = 'ticket_lifecycle' AND payload ->> 'event' = 'csat';
    DROP INDEX IF EXISTS tickets_csat_idx;
    ALTER TABLE tickets DROP COLUMN csat_rated_at;
    ALTER TABLE tickets DROP COLUMN csat_comment;
    ALTER TABLE tickets DROP COLUMN csat_rating;
    ALTER TABLE tickets DROP COLUMN csat_sent_at;
  `.execute(db);
}
