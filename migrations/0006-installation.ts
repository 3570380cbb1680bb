import { type Kysely, sql } from 'kysely';

/**
 * `installation`: one row naming this installation, so BullMQ job ids (which
 * live in Redis, outside any database backup) can never collide with ids a
 * previous database, a restored backup or another installation on the same
 * Redis prefix left behind. The row is written at start (src/db/queries/installation.ts),
 * together with the OID of the database it was written in: a restored or copied
 * database has a new OID and so gets a new id.
 *
 * `staff_auth_notice`: the mail telling a staff member why their reply was held as `auth_failed`.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE installation (
      singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
      id            text NOT NULL,
      database_oid  oid NOT NULL,
      created_at    timestamptz NOT NULL DEFAULT now()
    );
    ALTER TABLE outbound_mails DROP CONSTRAINT outbound_mails_kind_check;
    ALTER TABLE outbound_mails ADD CONSTRAINT outbound_mails_kind_check CHECK (kind IN (
      'acknowledgement', 'staff_notification', 'ticket_update',
      'password_setup', 'password_changed', 'staff_auth_notice'));
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP TABLE IF EXISTS installation;
    DELETE FROM outbound_mails WHERE kind = 'staff_auth_notice';
    ALTER TABLE outbound_mails DROP CONSTRAINT outbound_mails_kind_check;
    ALTER TABLE outbound_mails ADD CONSTRAINT outbound_mails_kind_check CHECK (kind IN (
      'acknowledgement', 'staff_notification', 'ticket_update',
      'password_setup', 'password_changed'));
  `.execute(db);
}
