import { type Kysely, sql } from 'kysely';

/**
 * Portal profile, organizations and search (issue 16).
 *
 * `users.time_zone`: the IANA zone a user chose on /profile; null means "not
 * chosen yet" (PORTAL_TIME_ZONE applies, and the portal offers the browser's).
 *
 * Organizations: a company whose contacts are known up front. Members are
 * rows of `organization_members`; an address whose domain is listed in
 * `organization_domains` joins when its account is created. A domain belongs
 * to at most one organization, so that join is never ambiguous. Only the
 * exact domain matches (not its subdomains), and only accounts created after
 * the domain was listed join by themselves; `cli org members add` adds others.
 *
 * Search in "My activity" is a substring match (ILIKE '%…%') over the subject
 * and the public messages. Trigram GIN indexes (pg_trgm) serve patterns of
 * three characters or more, Japanese included under a UTF-8 database;
 * shorter queries fall back to scanning the viewer's own requests (see
 * src/db/queries/portal-search.ts). Only public messages are indexed: internal
 * notes are never searchable from the portal.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    ALTER TABLE users ADD COLUMN time_zone text;

    CREATE TABLE organizations (
      id         bigserial PRIMARY KEY,
      name       text NOT NULL CHECK (length(btrim(name)) > 0),
      shared     boolean NOT NULL DEFAULT false,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE UNIQUE INDEX organizations_name_lower_key ON organizations (lower(name));
    CREATE TABLE organization_domains (
      domain          text PRIMARY KEY CHECK (domain = lower(domain)),
      organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE
    );
    CREATE TABLE organization_members (
      organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
      user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
      created_at      timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (organization_id, user_id)
    );
    CREATE INDEX organization_members_user_idx ON organization_members (user_id, organization_id);
    -- Every path that creates an account (cli user add, the portal's sign-up and CCs, the inbound
    -- batch's set-wise INSERT) ends in an INSERT INTO users: joining here, in the same statement,
    -- is the one place none of them can miss.
    CREATE FUNCTION join_organization_by_domain() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO organization_members (organization_id, user_id)
      SELECT d.organization_id, NEW.id FROM organization_domains d WHERE d.domain = split_part(NEW.email, '@', 2)
      ON CONFLICT DO NOTHING;
      RETURN NULL;
    END $$;
    CREATE TRIGGER users_join_organization AFTER INSERT ON users
      FOR EACH ROW EXECUTE FUNCTION join_organization_by_domain();

    CREATE INDEX tickets_subject_trgm_idx ON tickets USING gin (subject gin_trgm_ops);
    CREATE INDEX messages_public_body_trgm_idx ON messages USING gin (body_text gin_trgm_ops) WHERE visibility = 'public';
    -- "Sort by created" in the staff-wide list, the counterpart of tickets_updated_idx.
    CREATE INDEX tickets_created_idx ON tickets (created_at DESC, id DESC);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP INDEX IF EXISTS tickets_created_idx;
    DROP INDEX IF EXISTS messages_public_body_trgm_idx;
    DROP INDEX IF EXISTS tickets_subject_trgm_idx;
    DROP TRIGGER IF EXISTS users_join_organization ON users;
    DROP FUNCTION IF EXISTS join_organization_by_domain();
    DROP TABLE IF EXISTS organization_members, organization_domains, organizations;
    ALTER TABLE users DROP COLUMN IF EXISTS time_zone;
  `.execute(db);
}
