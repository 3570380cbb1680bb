import { type Kysely, sql } from 'kysely';

/**
 * Inbound processing state:
 *  - release_overrides: the held reasons an operator released this message
 *    from (`held release`); the pipeline skips exactly those rules on the
 *    next run, so one release never waives a different rule.
 *  - bounce lookup: a DSN names the recipient, so we look outbound mail up
 *    by (recipient, newest first) — already indexed — and by Message-ID.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE inbound_messages ADD COLUMN release_overrides text[] NOT NULL DEFAULT '{}';
    -- Raw mail is stored out of line but not compressed: compressing every
    -- message on the SMTP accept path costs more CPU than the disk it saves.
    ALTER TABLE inbound_messages ALTER COLUMN raw SET STORAGE EXTERNAL;
    -- The per-sender breaker looks for a recent loop hold of the same sender.
    CREATE INDEX inbound_messages_loop_idx ON inbound_messages (from_address, processed_at DESC)
      WHERE status = 'held' AND reason = 'loop';
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP INDEX IF EXISTS inbound_messages_loop_idx;
    ALTER TABLE inbound_messages ALTER COLUMN raw SET STORAGE EXTENDED;
    ALTER TABLE inbound_messages DROP COLUMN IF EXISTS release_overrides;
  `.execute(db);
}
