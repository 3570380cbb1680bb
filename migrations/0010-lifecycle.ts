import { type Kysely, sql } from 'kysely';

/**
 * Ticket lifecycle automations (solved → closed, pending reminder, pending →
 * solved) need to know since when a ticket has had its status, independent
 * of `updated_at`, which every message bumps. `pending_reminded_at` makes the
 * one reminder per pending spell a fact in the row, so several workers can
 * never send it twice. `ticket_lifecycle` is the mail kind those automations send.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE tickets ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT now();
    UPDATE tickets SET status_changed_at = updated_at;
    ALTER TABLE tickets ADD COLUMN pending_reminded_at timestamptz;
    CREATE INDEX tickets_lifecycle_idx ON tickets (status, status_changed_at) WHERE status IN ('solved', 'pending');
    ALTER TABLE outbound_mails DROP CONSTRAINT outbound_mails_kind_check;
    ALTER TABLE outbound_mails ADD CONSTRAINT outbound_mails_kind_check CHECK (kind IN (
      'acknowledgement', 'staff_notification', 'ticket_update',
      'password_setup', 'password_changed', 'ticket_lifecycle'));
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DELETE FROM outbound_mails WHERE kind = 'ticket_lifecycle';
    ALTER TABLE outbound_mails DROP CONSTRAINT outbound_mails_kind_check;
    ALTER TABLE outbound_mails ADD CONSTRAINT outbound_mails_kind_check CHECK (kind IN (
      'acknowledgement', 'staff_notification', 'ticket_update',
      'password_setup', 'password_changed'));
    DROP INDEX IF EXISTS tickets_lifecycle_idx;
    ALTER TABLE tickets DROP COLUMN pending_reminded_at;
    ALTER TABLE tickets DROP COLUMN status_changed_at;
  `.execute(db);
}
