import { Kysely, PostgresDialect, type ColumnType, type Generated, type Selectable } from 'kysely';
import pg from 'pg';
import { PreparingClient } from './prepared-client.js';

// bigint columns come back as strings by default; ticket and user ids stay far
// below 2^53, so parse them as numbers once, here, for every query.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
type Json = ColumnType<unknown, string | undefined, string>;

export type UserRole = 'customer' | 'staff';
export type Locale = 'en' | 'ja';
export type TicketStatus = 'new' | 'open' | 'pending' | 'hold' | 'solved' | 'closed';
export type TicketPriority = 'low' | 'normal' | 'high' | 'urgent';
export type ParticipantRole = 'requester' | 'cc';
/** A /metrics gauge's row: one count per label value (null for an unlabelled gauge). */
export interface LabelledCount {
  label: string | null;
  n: number;
}
export type Visibility = 'public' | 'internal';
export type InboundStatus = 'received' | 'processed' | 'held' | 'failed';
export type OutboundStatus = 'queued' | 'sent' | 'failed' | 'suppressed';
/** Every kind of mail we send; each has en and ja templates (checked at start-up by preloadTemplates). */
export const OUTBOUND_KINDS = [
  'acknowledgement',
  'staff_notification',
  'ticket_update',
  'password_setup',
  'password_changed',
  'staff_auth_notice',
  'ticket_lifecycle',
  'staff_digest',
  'sign_in_link',
  'request_confirmation',
] as const;
export type OutboundKind = (typeof OUTBOUND_KINDS)[number];

export type CsatRating = 'good' | 'bad';

export interface UsersTable {
  id: Generated<number>;
  email: string;
  name: string | null;
  role: ColumnType<UserRole, UserRole | undefined, UserRole>;
  password_hash: string | null;
  verified_at: NullableTimestamp;
  locale: ColumnType<Locale, Locale | undefined, Locale>;
  /** IANA zone chosen on /profile; null: not chosen yet, PORTAL_TIME_ZONE applies (migration 0014). */
  time_zone: ColumnType<string | null, string | null | undefined, string | null>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface TicketsTable {
  id: Generated<number>;
  subject: ColumnType<string, string | undefined, string>;
  status: ColumnType<TicketStatus, TicketStatus | undefined, TicketStatus>;
  requester_id: number;
  assignee_id: number | null;
  priority: ColumnType<TicketPriority, TicketPriority | undefined, TicketPriority>;
  follow_up_of: number | null;
  via: ColumnType<'email' | 'portal', 'email' | 'portal' | undefined, 'email' | 'portal'>;
  created_at: Generated<Date>;
  updated_at: Timestamp;
  /** When the status last changed: the lifecycle automations count from here, not from updated_at. */
  status_changed_at: Generated<Date>;
  /** Set when the one reminder of the current pending spell was queued; cleared by any status change. */
  pending_reminded_at: NullableTimestamp;
  /** When the satisfaction survey was queued (once per ticket; migration 0011). */
  csat_sent_at: NullableTimestamp;
  csat_rating: CsatRating | null;
  csat_comment: string | null;
  csat_rated_at: NullableTimestamp;
}

export interface TicketParticipantsTable {
  ticket_id: number;
  user_id: number;
  role: ParticipantRole;
  created_at: Generated<Date>;
}

export interface InboundMessagesTable {
  id: Generated<number>;
  raw: Buffer;
  size: number;
  mail_from: ColumnType<string, string | undefined, string>;
  rcpt_to: string[];
  client_address: string;
  helo: ColumnType<string, string | undefined, string>;
  tls: ColumnType<boolean, boolean | undefined, boolean>;
  status: ColumnType<InboundStatus, InboundStatus | undefined, InboundStatus>;
  reason: string | null;
  error: string | null;
  header_message_id: string | null;
  from_address: string | null;
  subject: string | null;
  ticket_id: number | null;
  auth: Json | null;
  attempts: Generated<number>;
  received_at: Generated<Date>;
  processed_at: NullableTimestamp;
  /** Held reasons an operator released this message from (migration 0002). */
  release_overrides: ColumnType<string[], string[] | undefined, string[]>;
}

export interface InboundDedupeTable {
  support_address: string;
  dedupe_key: string;
  inbound_message_id: number;
  created_at: Generated<Date>;
}

export interface MessagesTable {
  id: Generated<number>;
  ticket_id: number;
  author_id: number;
  visibility: ColumnType<Visibility, Visibility | undefined, Visibility>;
  via: ColumnType<'email' | 'portal' | 'system', 'email' | 'portal' | 'system' | undefined, never>;
  body_text: ColumnType<string, string | undefined, string>;
  body_html: string | null;
  original_text: string | null;
  original_html: string | null;
  message_id: string | null;
  inbound_message_id: number | null;
  created_at: Generated<Date>;
}

export interface AttachmentsTable {
  id: Generated<number>;
  message_id: number;
  filename: string;
  content_type: ColumnType<string, string | undefined, string>;
  size: number;
  sha256: string;
  content_id: string | null;
  inline: ColumnType<boolean, boolean | undefined, boolean>;
  content: Buffer;
  created_at: Generated<Date>;
}

export interface OutboundMailsTable {
  id: Generated<number>;
  kind: OutboundKind;
  ticket_id: number | null;
  ticket_message_id: number | null;
  user_id: number | null;
  recipient: string;
  locale: ColumnType<Locale, Locale | undefined, Locale>;
  payload: Json;
  message_id: string;
  status: ColumnType<OutboundStatus, OutboundStatus | undefined, OutboundStatus>;
  attempts: Generated<number>;
  last_error: string | null;
  bounced_at: NullableTimestamp;
  bounce_inbound_id: number | null;
  created_at: Generated<Date>;
  sent_at: NullableTimestamp;
}

export interface AuthTokensTable {
  id: Generated<number>;
  user_id: number;
  token_hash: Buffer;
  purpose: 'password_setup' | 'password_reset' | 'sign_in';
  /** Where the user was going (a local path), kept server-side so the mailed link carries only the token. */
  return_to: string | null;
  expires_at: Timestamp;
  used_at: NullableTimestamp;
  created_at: Generated<Date>;
}

export interface SessionsTable {
  id_hash: Buffer;
  user_id: number;
  csrf_token: string;
  created_at: Generated<Date>;
  last_seen_at: Generated<Date>;
  expires_at: Timestamp;
}

/** A signed-out visitor's request, waiting for the link mailed to `email` (migration 0013). */
export interface PortalSubmissionsTable {
  id: Generated<number>;
  token_hash: Buffer;
  email: string;
  name: string;
  locale: ColumnType<Locale, Locale | undefined, Locale>;
  subject: string;
  body: string;
  ccs: ColumnType<string[], string[] | undefined, string[]>;
  expires_at: Timestamp;
  created_at: Generated<Date>;
}

export interface PortalSubmissionFilesTable {
  id: Generated<number>;
  submission_id: number;
  filename: string;
  content_type: string;
  sha256: string;
  content: Buffer;
}

/** One row: this installation's id (see migrations/0006-installation.ts). */
export interface InstallationTable {
  singleton: ColumnType<boolean, boolean | undefined, never>;
  id: string;
  database_oid: number;
  created_at: Generated<Date>;
}

/** A customer company (migration 0014); members of a shared one see each other's requests. */
export interface OrganizationsTable {
  id: Generated<number>;
  name: string;
  shared: ColumnType<boolean, boolean | undefined, boolean>;
  created_at: Generated<Date>;
}

export interface OrganizationDomainsTable {
  domain: string;
  organization_id: number;
}

export interface OrganizationMembersTable {
  organization_id: number;
  user_id: number;
  created_at: Generated<Date>;
}

export interface Database {
  installation: InstallationTable;
  users: UsersTable;
  tickets: TicketsTable;
  ticket_participants: TicketParticipantsTable;
  inbound_messages: InboundMessagesTable;
  inbound_dedupe: InboundDedupeTable;
  messages: MessagesTable;
  attachments: AttachmentsTable;
  outbound_mails: OutboundMailsTable;
  auth_tokens: AuthTokensTable;
  sessions: SessionsTable;
  portal_submissions: PortalSubmissionsTable;
  portal_submission_files: PortalSubmissionFilesTable;
  organizations: OrganizationsTable;
  organization_domains: OrganizationDomainsTable;
  organization_members: OrganizationMembersTable;
}

export type Db = Kysely<Database>;
export type UserRow = Selectable<UsersTable>;
export type TicketRow = Selectable<TicketsTable>;
export type MessageRow = Selectable<MessagesTable>;
export type InboundMessageRow = Selectable<InboundMessagesTable>;
export type OutboundMailRow = Selectable<OutboundMailsTable>;

export function createDb(databaseUrl: string, poolSize = 10): Db {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: poolSize,
    // Hot queries opt into per-connection prepared statements (src/db/prepared-client.ts).
    Client: PreparingClient,
    // Fail fast when PostgreSQL is unreachable so the SMTP edge can answer 451
    // well inside a client's patience instead of hanging the transaction.
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
  });
  // A connection lost during a PostgreSQL restart or network cut emits 'error':
  // on the pool for idle clients, on the client itself for checked-out ones.
  // Either without a listener crashes the process; the failure already reaches
  // the caller as a rejected query, so the events only need absorbing.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}
