import { type Kysely, sql } from 'kysely';

/**
 * Submit a request and sign-in links (issue #16).
 *
 * - `auth_tokens` gains the `sign_in` purpose (a one-time link that starts a
 *   session) and `return_to`: where the user was going, kept server-side so
 *   the mailed link carries nothing but the token.
 * - `portal_submissions` holds a signed-out visitor's request until the link
 *   mailed to the address they typed is used: nothing becomes a ticket (or an
 *   account, or a CC) before that. Only the token's SHA-256 is stored; rows
 *   expire and are deleted lazily. Files wait in `portal_submission_files`.
 * - Two mail kinds: `sign_in_link` and `request_confirmation` (the latter to
 *   an address without an account, so it has no user and no visitor text).
 */
const KINDS_BEFORE = `'acknowledgement', 'staff_notification', 'ticket_update',
      'password_setup', 'password_changed', 'staff_auth_notice', 'ticket_lifecycle', 'staff_digest'`;

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE auth_tokens DROP CONSTRAINT auth_tokens_purpose_check;
    ALTER TABLE auth_tokens ADD CONSTRAINT auth_tokens_purpose_check CHECK (purpose IN ('password_setup', 'password_reset', 'sign_in'));
    ALTER TABLE auth_tokens ADD COLUMN return_to text;

    ALTER TABLE outbound_mails DROP CONSTRAINT outbound_mails_kind_check;
    ALTER TABLE outbound_mails ADD CONSTRAINT outbound_mails_kind_check CHECK (kind IN (
      ${sql.raw(KINDS_BEFORE)}, 'sign_in_link', 'request_confirmation'));

    CREATE TABLE portal_submissions (
      id          bigserial PRIMARY KEY,
      token_hash  bytea NOT NULL UNIQUE,
      email       text NOT NULL,
      name        text NOT NULL,
      locale      text NOT NULL DEFAULT 'en',
      subject     text NOT NULL,
      body        text NOT NULL,
      ccs         text[] NOT NULL DEFAULT '{}',
      expires_at  timestamptz NOT NULL,
      created_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX portal_submissions_expiry_idx ON portal_submissions (expires_at);
    CREATE TABLE portal_submission_files (
      id             bigserial PRIMARY KEY,
      submission_id  bigint NOT NULL REFERENCES portal_submissions (id) ON DELETE CASCADE,
      filename       text NOT NULL,
      content_type   text NOT NULL,
      sha256         text NOT NULL,
      content        bytea NOT NULL
    );
    CREATE INDEX portal_submission_files_submission_idx ON portal_submission_files (submission_id);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP TABLE IF EXISTS portal_submission_files, portal_submissions;
    DELETE FROM outbound_mails WHERE kind IN ('sign_in_link', 'request_confirmation');
    ALTER TABLE outbound_mails DROP CONSTRAINT outbound_mails_kind_check;
    ALTER TABLE outbound_mails ADD CONSTRAINT outbound_mails_kind_check CHECK (kind IN (${sql.raw(KINDS_BEFORE)}));
    DELETE FROM auth_tokens WHERE purpose = 'sign_in';
    ALTER TABLE auth_tokens DROP COLUMN return_to;
    ALTER TABLE auth_tokens DROP CONSTRAINT auth_tokens_purpose_check;
    ALTER TABLE auth_tokens ADD CONSTRAINT auth_tokens_purpose_check CHECK (purpose IN ('password_setup', 'password_reset'));
  `.execute(db);
}
