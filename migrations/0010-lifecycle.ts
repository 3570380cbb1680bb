import { type Kysely, sql } from 'kysely';

/**
 * Ticket lifecycle automations (solved → closed, pending reminder, pending →
 * solved) need to know since when a ticket has had its status, independent
 * of `updated_at`, which every message bumps. `pending_reminded_at` makes the
 * one reminder per pending spell a fact in the row, so several workers can
 * never send it twice. `ticket_lifecycle` is the mail kind those automations send.
 *
 * Staff work the queue by mail: `priority` (#priority) and the `hold` status
 * (#status on-hold: waiting on a third party; customers see it as open), and
 * get a daily digest (`staff_digest`), at most one per staff member and day:
 * the unique index makes that a fact of the table, whatever runs it.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE tickets ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT now();
    UPDATE tickets SET status_changed_at = updated_at;
    ALTER TABLE tickets ADD COLUMN pending_reminded_at timestamptz;
    ALTER TABLE tickets ADD COLUMN priority text NOT NULL DEFAULT 'normal' CHECK (priority IN ('low', 'normal', 'high', 'urgent'));
    ALTER TABLE tickets DROP CONSTRAINT tickets_status_check;
    ALTER TABLE tickets ADD CONSTRAINT tickets_status_check CHECK (status IN ('new', 'open', 'pending', 'hold', 'solved', 'closed'));
    -- "My open tickets" in the staff digest and notifications by assignee.
    CREATE INDEX tickets_assignee_idx ON tickets (assignee_id, status) WHERE assignee_id IS NOT NULL;
    CREATE INDEX tickets_lifecycle_idx ON tickets (status, status_changed_at) WHERE status IN ('solved', 'pending');
    ALTER TABLE outbound_mails DROP CONSTRAINT outbound_mails_kind_check;
    ALTER TABLE outbound_mails ADD CONSTRAINT outbound_mails_kind_check CHECK (kind IN (
      'acknowledgement', 'staff_notification', 'ticket_update',
      'password_setup', 'password_changed', 'staff_auth_notice', 'ticket_lifecycle', 'staff_digest'));
    CREATE UNIQUE INDEX outbound_mails_digest_day_idx ON outbound_mails (recipient, (payload ->> 'date')) WHERE kind = 'staff_digest';
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DELETE FROM outbound_mails WHERE kind IN ('ticket_lifecycle', 'staff_digest');
    DROP INDEX IF EXISTS outbound_mails_digest_day_idx;
    ALTER TABLE outbound_mails DROP CONSTRAINT outbound_mails_kind_check;
    ALTER TABLE outbound_mails ADD CONSTRAINT outbound_mails_kind_check CHECK (kind IN (
      'acknowledgement', 'staff_notification', 'ticket_update',
      'password_setup', 'password_changed', 'staff_auth_notice'));
    DROP INDEX IF EXISTS tickets_lifecycle_idx;
    DROP INDEX IF EXISTS tickets_assignee_idx;
    UPDATE tickets SET status = 'open' WHERE status = 'hold';
    ALTER TABLE tickets DROP CONSTRAINT tickets_status_check;
    ALTER TABLE tickets ADD CONSTRAINT tickets_status_check CHECK (status IN ('new', 'open', 'pending', 'solved', 'closed'));
    ALTER TABLE tickets DROP COLUMN priority;
    ALTER TABLE tickets DROP COLUMN pending_reminded_at;
    ALTER TABLE tickets DROP COLUMN status_changed_at;
  `.execute(db);
}
