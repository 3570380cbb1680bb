import { type Kysely, sql } from 'kysely';

// Plain SQL: check constraints, partial indexes and expression indexes read
// better here than through the schema builder, and operators can copy them.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE users (
      id            bigserial PRIMARY KEY,
      email         text NOT NULL CHECK (email = lower(email) AND position('@' in email) > 1),
      name          text,
      role          text NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'staff')),
      password_hash text,
      verified_at   timestamptz,
      locale        text NOT NULL DEFAULT 'en' CHECK (locale IN ('en', 'ja')),
      created_at    timestamptz NOT NULL DEFAULT now(),
      updated_at    timestamptz NOT NULL DEFAULT now()
    );
    CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
    CREATE INDEX users_staff_idx ON users (id) WHERE role = 'staff';

    CREATE TABLE tickets (
      id           bigserial PRIMARY KEY,
      subject      text NOT NULL DEFAULT '',
      status       text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'open', 'pending', 'solved', 'closed')),
      requester_id bigint NOT NULL REFERENCES users (id),
      assignee_id  bigint REFERENCES users (id),
      follow_up_of bigint REFERENCES tickets (id),
      via          text NOT NULL DEFAULT 'email' CHECK (via IN ('email', 'portal')),
      created_at   timestamptz NOT NULL DEFAULT now(),
      updated_at   timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX tickets_requester_idx ON tickets (requester_id, updated_at DESC);
    CREATE INDEX tickets_status_idx ON tickets (status, updated_at DESC);

    CREATE TABLE ticket_participants (
      ticket_id  bigint NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
      user_id    bigint NOT NULL REFERENCES users (id),
      role       text NOT NULL CHECK (role IN ('requester', 'cc')),
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (ticket_id, user_id)
    );
    -- "My requests" / "CC'd on" start from the user.
    CREATE INDEX ticket_participants_user_idx ON ticket_participants (user_id, role, ticket_id);

    CREATE TABLE inbound_messages (
      id              bigserial PRIMARY KEY,
      raw             bytea NOT NULL,
      size            integer NOT NULL,
      mail_from       text NOT NULL DEFAULT '',
      rcpt_to         text[] NOT NULL,
      client_address  text NOT NULL,
      helo            text NOT NULL DEFAULT '',
      tls             boolean NOT NULL DEFAULT false,
      status          text NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'processed', 'held', 'failed')),
      reason          text,
      error           text,
      header_message_id text,
      from_address    text,
      subject         text,
      ticket_id       bigint REFERENCES tickets (id),
      auth            jsonb,
      attempts        integer NOT NULL DEFAULT 0,
      received_at     timestamptz NOT NULL DEFAULT now(),
      processed_at    timestamptz
    );
    -- The sweeper's scan: only unprocessed rows, oldest first.
    CREATE INDEX inbound_messages_pending_idx ON inbound_messages (received_at) WHERE status = 'received';
    CREATE INDEX inbound_messages_held_idx ON inbound_messages (reason, received_at DESC) WHERE status = 'held';
    -- The per-sender breaker counts recent mail by sender.
    CREATE INDEX inbound_messages_from_idx ON inbound_messages (from_address, received_at DESC);

    -- One row per (support address, Message-ID or raw hash): the dedupe ledger.
    CREATE TABLE inbound_dedupe (
      support_address    text NOT NULL,
      dedupe_key         text NOT NULL,
      inbound_message_id bigint NOT NULL REFERENCES inbound_messages (id) ON DELETE CASCADE,
      created_at         timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (support_address, dedupe_key)
    );

    CREATE TABLE messages (
      id                 bigserial PRIMARY KEY,
      ticket_id          bigint NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
      author_id          bigint NOT NULL REFERENCES users (id),
      visibility         text NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'internal')),
      via                text NOT NULL DEFAULT 'email' CHECK (via IN ('email', 'portal', 'system')),
      body_text          text NOT NULL DEFAULT '',
      body_html          text,
      original_text      text,
      original_html      text,
      message_id         text,
      inbound_message_id bigint REFERENCES inbound_messages (id),
      created_at         timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX messages_ticket_idx ON messages (ticket_id, created_at, id);
    CREATE INDEX messages_message_id_idx ON messages (message_id) WHERE message_id IS NOT NULL;

    CREATE TABLE attachments (
      id           bigserial PRIMARY KEY,
      message_id   bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
      filename     text NOT NULL,
      content_type text NOT NULL DEFAULT 'application/octet-stream',
      size         integer NOT NULL,
      sha256       text NOT NULL,
      content_id   text,
      inline       boolean NOT NULL DEFAULT false,
      content      bytea NOT NULL,
      created_at   timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX attachments_message_idx ON attachments (message_id);

    CREATE TABLE outbound_mails (
      id                 bigserial PRIMARY KEY,
      kind               text NOT NULL CHECK (kind IN (
                           'acknowledgement', 'staff_notification', 'ticket_update',
                           'password_setup', 'password_changed')),
      ticket_id          bigint REFERENCES tickets (id) ON DELETE CASCADE,
      ticket_message_id  bigint REFERENCES messages (id) ON DELETE CASCADE,
      user_id            bigint REFERENCES users (id),
      recipient          text NOT NULL,
      locale             text NOT NULL DEFAULT 'en',
      payload            jsonb NOT NULL DEFAULT '{}'::jsonb,
      message_id         text NOT NULL UNIQUE,
      status             text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed', 'suppressed')),
      attempts           integer NOT NULL DEFAULT 0,
      last_error         text,
      bounced_at         timestamptz,
      bounce_inbound_id  bigint REFERENCES inbound_messages (id),
      created_at         timestamptz NOT NULL DEFAULT now(),
      sent_at            timestamptz
    );
    CREATE INDEX outbound_mails_queued_idx ON outbound_mails (created_at) WHERE status = 'queued';
    CREATE INDEX outbound_mails_ticket_idx ON outbound_mails (ticket_id, created_at);
    -- Loop breakers count recent mail per recipient.
    CREATE INDEX outbound_mails_recipient_idx ON outbound_mails (recipient, created_at DESC);

    CREATE TABLE auth_tokens (
      id         bigserial PRIMARY KEY,
      user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
      token_hash bytea NOT NULL UNIQUE,
      purpose    text NOT NULL CHECK (purpose IN ('password_setup', 'password_reset')),
      expires_at timestamptz NOT NULL,
      used_at    timestamptz,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX auth_tokens_user_idx ON auth_tokens (user_id) WHERE used_at IS NULL;

    CREATE TABLE sessions (
      id_hash      bytea PRIMARY KEY,
      user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
      csrf_token   text NOT NULL,
      created_at   timestamptz NOT NULL DEFAULT now(),
      last_seen_at timestamptz NOT NULL DEFAULT now(),
      expires_at   timestamptz NOT NULL
    );
    CREATE INDEX sessions_user_idx ON sessions (user_id);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP TABLE IF EXISTS sessions, auth_tokens, outbound_mails, attachments, messages,
      inbound_dedupe, inbound_messages, ticket_participants, tickets, users CASCADE;
  `.execute(db);
}
