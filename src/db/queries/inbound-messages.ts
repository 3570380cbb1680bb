import { sql } from 'kysely';
import type { Db, InboundMessageRow, LabelledCount } from '../database.js';
import type { UserRef } from './users.js';

export interface InboundEnvelope {
  mailFrom: string;
  rcptTo: string[];
  clientAddress: string;
  helo: string;
  tls: boolean;
}

/**
 * Commits received messages, bytes plus envelope, in one statement (the
 * accept path's group commit); the caller answers 250 only after this
 * resolves. Returns the ids in input order: they are drawn in a CTE that is
 * evaluated once, so each message learns its own row's id without relying
 * on RETURNING order.
 */
export async function insertInboundMessages(db: Db, items: Array<{ raw: Buffer; env: InboundEnvelope }>): Promise<number[]> {
  const values = items.map(
    (p, i) =>
      sql`(${i + 1}::int, ${p.raw}::bytea, ${p.raw.length}::int, ${p.env.mailFrom}::text, ${p.env.rcptTo}::text[], ${p.env.clientAddress}::text, ${p.env.helo}::text, ${p.env.tls}::boolean)`,
  );
  const { rows } = await sql<{ id: number; ord: number }>`
    WITH ids AS MATERIALIZED (
      SELECT nextval(pg_get_serial_sequence('inbound_messages', 'id'))::bigint AS id, ord::int AS ord FROM generate_series(1, ${items.length}::int) AS ord
    ), ins AS (
      INSERT INTO inbound_messages (id, raw, size, mail_from, rcpt_to, client_address, helo, tls)
      SELECT ids.id, v.raw, v.size, v.mail_from, v.rcpt_to, v.client_address, v.helo, v.tls
      FROM ids JOIN (VALUES ${sql.join(values)}) AS v(ord, raw, size, mail_from, rcpt_to, client_address, helo, tls) ON v.ord = ids.ord
      RETURNING id
    )
    SELECT ids.id, ids.ord FROM ids WHERE ids.id IN (SELECT id FROM ins) ORDER BY ids.ord
  `.execute(db);
  if (rows.length !== items.length) throw new Error(`inbound insert stored ${rows.length} of ${items.length} rows`);
  return rows.map((r) => Number(r.id));
}

/** One message: a batch of one (tests and tools store mail the way the listener does). */
export async function insertInboundMessage(db: Db, raw: Buffer, env: InboundEnvelope): Promise<number> {
  const [id] = await insertInboundMessages(db, [{ raw, env }]);
  return id!;
}

/** Rows still waiting for processing after the grace period: the sweeper re-enqueues them. */
export async function findStaleReceivedIds(db: Db, olderThan: Date, limit: number): Promise<number[]> {
  const rows = await db
    .selectFrom('inbound_messages')
    .select('id')
    .where('status', '=', 'received')
    .where('received_at', '<', olderThan)
    .orderBy('received_at')
    .limit(limit)
    .execute();
  return rows.map((r) => r.id);
}

export async function findInboundMessage(db: Db, id: number): Promise<InboundMessageRow | undefined> {
  return db.selectFrom('inbound_messages').selectAll().where('id', '=', id).executeTakeFirst();
}

/** `held list`: newest first, optionally of one reason. */
export async function listHeldInbound(db: Db, q: { reason?: string; limit: number }) {
  let query = db
    .selectFrom('inbound_messages')
    .select(['id', 'received_at', 'reason', 'from_address', 'mail_from', 'subject', 'error', 'size'])
    .where('status', '=', 'held')
    .orderBy('received_at', 'desc')
    .orderBy('id', 'desc')
    .limit(q.limit);
  if (q.reason) query = query.where('reason', '=', q.reason);
  return query.execute();
}

/** A decided row made `received` again (held release, `#send`): its decision and attempts are cleared. */
const BACK_TO_RECEIVED = {
  status: 'received',
  reason: null,
  error: null,
  ticket_id: null,
  processed_at: null,
  attempts: 0,
} as const;

/**
 * `held release`: back to `received` with the waivers recorded. False when the row
 * is no longer held (a concurrent release or delete); the pipeline's own row lock
 * and status check make this safe against a running worker.
 */
export async function resetHeldForRelease(db: Db, id: number, releaseOverrides: string[]): Promise<boolean> {
  const updated = await db
    .updateTable('inbound_messages')
    .set({
      ...BACK_TO_RECEIVED,
      release_overrides: releaseOverrides,
    })
    .where('id', '=', id)
    .where('status', '=', 'held')
    .executeTakeFirst();
  return Number(updated.numUpdatedRows) === 1;
}

/** What processing decided for a message (throws when it is gone). */
export async function getInboundOutcome(db: Db, id: number): Promise<Pick<InboundMessageRow, 'status' | 'reason' | 'ticket_id'>> {
  return db.selectFrom('inbound_messages').select(['status', 'reason', 'ticket_id']).where('id', '=', id).executeTakeFirstOrThrow();
}

/** `held delete`: only while still held (call clearBounceReference first, in the same transaction). */
export async function deleteHeldInbound(db: Db, id: number): Promise<void> {
  await db.deleteFrom('inbound_messages').where('id', '=', id).where('status', '=', 'held').execute();
}

/** `requeue`: failed messages (one, or all) back to received with their attempts reset; returns how many. */
export async function requeueFailedInbound(db: Db, id: number | null): Promise<number> {
  let q = db.updateTable('inbound_messages').set({ status: 'received', attempts: 0 }).where('status', '=', 'failed');
  if (id !== null) q = q.where('id', '=', id);
  const res = await q.executeTakeFirst();
  return Number(res.numUpdatedRows);
}

/** /metrics: messages stored but not yet processed. */
export async function countPendingInbound(db: Db): Promise<LabelledCount[]> {
  const { rows } = await sql<LabelledCount>`select null as label, count(*) as n from inbound_messages where status = 'received'`.execute(
    db,
  );
  return rows;
}

/** /metrics: held messages by reason. */
export async function countHeldInboundByReason(db: Db): Promise<LabelledCount[]> {
  const { rows } =
    await sql<LabelledCount>`select reason as label, count(*) as n from inbound_messages where status = 'held' group by 1`.execute(db);
  return rows;
}

/**
 * `#send`: an agent's replies on a ticket held as `collision` go back to `received`, waived from that rule
 * (as `held release` would), in the caller's transaction. Returns their ids, to enqueue after commit.
 */
export async function releaseHeldCollisions(db: Db, ticketId: number, fromAddress: string): Promise<number[]> {
  const rows = await db
    .updateTable('inbound_messages')
    .set({
      ...BACK_TO_RECEIVED,
      release_overrides: sql<string[]>`CASE WHEN 'collision' = ANY(release_overrides) THEN release_overrides
        ELSE array_append(release_overrides, 'collision') END`,
    })
    .where('status', '=', 'held')
    .where('reason', '=', 'collision')
    .where('ticket_id', '=', ticketId)
    .where(sql`lower(from_address)`, '=', fromAddress.toLowerCase())
    .returning('id')
    .execute();
  return rows.map((r) => r.id);
}

/** What the inbound rules need to know about one message before deciding (src/jobs/inbound/gather-facts.ts). */
export interface InboundClaim {
  id: number;
  /** The dedupe ledger's mailbox and key for this message. */
  box: string;
  key: string;
  /** The From address ('' when there is none). */
  sender: string;
}

export interface InboundClaimFacts {
  id: number;
  /** The row that owns the dedupe entry (this one when it has just been claimed) and its ticket. */
  ownerId: number | null;
  ownerTicketId: number | null;
  /** The breaker's inputs: a recent `loop` hold of the sender, and how many of their messages were decided lately. */
  paused: number | null;
  recent: number;
  /** The sender's processed bytes of the last 24 h, this message included. */
  bytesToday: number;
  sender: UserRef | null;
}

/**
 * The breaker counts committed rows only, so messages from one sender
 * processed at the same moment by different workers may overshoot by at most
 * INBOUND_CONCURRENCY: a breaker against loops does not need to be exact,
 * and a per-sender lock would serialise every message on the hot path.
 */
function senderBreakerColumns(windowMs: number) {
  return sql`
      (SELECT m.id FROM inbound_messages m
        WHERE m.from_address = i.sender AND m.status = 'held' AND m.reason = 'loop' AND m.id <> i.id
          AND m.processed_at > now() - interval '1 hour' LIMIT 1)::int AS paused,
      (SELECT count(*) FROM inbound_messages m
        WHERE m.from_address = i.sender AND m.id <> i.id AND m.status IN ('processed', 'held')
          AND (m.reason IS NULL OR m.reason <> 'duplicate')
          AND m.received_at > now() - make_interval(secs => ${windowMs / 1000}))::int AS recent,
      ((SELECT coalesce(sum(m.size), 0) FROM inbound_messages m
        WHERE m.from_address = i.sender AND m.id <> i.id AND m.status = 'processed'
          AND m.received_at > now() - interval '1 day')
       + (SELECT m.size FROM inbound_messages m WHERE m.id = i.id))::bigint AS bytes_today`;
}

/**
 * Claims the dedupe ledger entry of every message and reads, in one
 * statement, who owns each entry, the sender breaker's and quota's inputs
 * and the sender's account. The caller passes at most one message per key.
 */
export async function claimInboundFacts(db: Db, breakerWindowMs: number, claims: InboundClaim[]): Promise<Map<number, InboundClaimFacts>> {
  const out = new Map<number, InboundClaimFacts>();
  if (claims.length === 0) return out;
  const { rows } = await sql<{
    id: number;
    inserted: boolean;
    owner_id: number | null;
    owner_ticket_id: number | null;
    paused: number | null;
    recent: number;
    bytes_today: string;
    sender_id: number | null;
    sender_email: string | null;
    sender_role: UserRef['role'] | null;
    sender_locale: UserRef['locale'] | null;
  }>`
    WITH input AS (
      SELECT * FROM unnest(${claims.map((c) => c.id)}::bigint[], ${claims.map((c) => c.box)}::text[],
                           ${claims.map((c) => c.key)}::text[], ${claims.map((c) => c.sender)}::text[]) AS i(id, box, key, sender)
    ), ins AS (
      INSERT INTO inbound_dedupe (support_address, dedupe_key, inbound_message_id)
      SELECT box, key, id FROM input
      ON CONFLICT (support_address, dedupe_key) DO NOTHING
      RETURNING inbound_message_id
    )
    SELECT i.id::int AS id,
      EXISTS (SELECT 1 FROM ins WHERE ins.inbound_message_id = i.id) AS inserted,
      d.inbound_message_id::int AS owner_id, om.ticket_id::int AS owner_ticket_id,
      ${senderBreakerColumns(breakerWindowMs)},
      u.id::int AS sender_id, u.email AS sender_email, u.role AS sender_role, u.locale AS sender_locale
    FROM input i
    LEFT JOIN inbound_dedupe d ON d.support_address = i.box AND d.dedupe_key = i.key
    LEFT JOIN inbound_messages om ON om.id = d.inbound_message_id
    LEFT JOIN users u ON lower(u.email) = i.sender AND i.sender <> ''
  `.execute(db);
  // The statement's snapshot may predate a concurrent delivery's commit that made an insert a no-op: look again.
  const lost = rows.filter((r) => !r.inserted && r.owner_id === null).map((r) => claims.find((c) => c.id === Number(r.id))!);
  const late = new Map<number, { owner: number; ticket: number | null }>();
  if (lost.length > 0) {
    const { rows: owners } = await sql<{ id: number; owner_id: number; owner_ticket_id: number | null }>`
      SELECT i.id::int AS id, d.inbound_message_id::int AS owner_id, m.ticket_id::int AS owner_ticket_id
      FROM unnest(${lost.map((c) => c.id)}::bigint[], ${lost.map((c) => c.box)}::text[], ${lost.map((c) => c.key)}::text[]) AS i(id, box, key)
      JOIN inbound_dedupe d ON d.support_address = i.box AND d.dedupe_key = i.key
      JOIN inbound_messages m ON m.id = d.inbound_message_id
    `.execute(db);
    for (const o of owners)
      late.set(Number(o.id), { owner: Number(o.owner_id), ticket: o.owner_ticket_id === null ? null : Number(o.owner_ticket_id) });
  }
  for (const r of rows) {
    const id = Number(r.id);
    const owner = r.inserted
      ? { owner: id, ticket: null }
      : r.owner_id !== null
        ? { owner: Number(r.owner_id), ticket: r.owner_ticket_id }
        : late.get(id);
    out.set(id, {
      id,
      ownerId: owner?.owner ?? null,
      ownerTicketId: owner?.ticket === null || owner?.ticket === undefined ? null : Number(owner.ticket),
      paused: r.paused === null ? null : Number(r.paused),
      recent: Number(r.recent),
      bytesToday: Number(r.bytes_today),
      sender:
        r.sender_id === null ? null : { id: Number(r.sender_id), email: r.sender_email!, role: r.sender_role!, locale: r.sender_locale! },
    });
  }
  return out;
}

/** The columns of the held listing a parsed message fills in. */
export interface InboundListing {
  headerMessageId: string | null;
  fromAddress: string | null;
  subject: string | null;
}

/** How a message was decided: the row's status, reason (processed) or reason and detail (held), ticket and verdicts. */
export interface InboundDecision {
  id: number;
  status: 'processed' | 'held';
  reason: string | null;
  /** The held detail (null for processed mail). */
  error: string | null;
  ticketId: number | null;
  /** Null: the message was not parsed, the listing columns stay as they are. */
  listing?: InboundListing | null;
  /** The staff rule's verdict: replaces what the row has, it explains the decision. */
  staffAuth?: unknown;
  /** The SPF/DKIM/DMARC verdict: stored when the row has none. */
  senderAuth?: unknown;
}

/** Marks many inbound rows decided in one statement (listing facts, outcome, verdicts). */
export async function markInboundDecided(db: Db, decisions: InboundDecision[]): Promise<void> {
  if (decisions.length === 0) return;
  const json = (v: unknown) => (v === undefined || v === null ? null : JSON.stringify(v));
  await sql`
    UPDATE inbound_messages m
    SET header_message_id = CASE WHEN v.listed THEN v.header_message_id ELSE m.header_message_id END,
        from_address = CASE WHEN v.listed THEN v.from_address ELSE m.from_address END,
        subject = CASE WHEN v.listed THEN v.subject ELSE m.subject END,
        status = v.status, reason = v.reason, error = v.error, ticket_id = v.ticket_id, processed_at = now(),
        auth = coalesce(v.staff_auth::jsonb, m.auth, v.sender_auth::jsonb)
    FROM unnest(${decisions.map((d) => d.id)}::bigint[], ${decisions.map((d) => Boolean(d.listing))}::boolean[],
                ${decisions.map((d) => d.listing?.headerMessageId ?? null)}::text[], ${decisions.map((d) => d.listing?.fromAddress ?? null)}::text[],
                ${decisions.map((d) => d.listing?.subject ?? null)}::text[], ${decisions.map((d) => d.status)}::text[],
                ${decisions.map((d) => d.reason)}::text[], ${decisions.map((d) => d.error)}::text[], ${decisions.map((d) => d.ticketId)}::bigint[],
                ${decisions.map((d) => json(d.staffAuth))}::text[], ${decisions.map((d) => json(d.senderAuth))}::text[])
      AS v(id, listed, header_message_id, from_address, subject, status, reason, error, ticket_id, staff_auth, sender_auth)
    WHERE m.id = v.id
  `.execute(db);
}

/** What processing reads of a row before any transaction: the bytes and envelope to parse. */
export const PROCESSING_COLUMNS = ['id', 'raw', 'mail_from', 'rcpt_to', 'client_address', 'helo', 'release_overrides'] as const;

/** The rows among `ids` still waiting to be processed. */
/** The stored size of the rows among `ids` still `received`, in id order: what a batch would read into memory. */
export function findReceivedSizes(db: Db, ids: number[]): Promise<Array<{ id: number; size: number }>> {
  return db
    .selectFrom('inbound_messages')
    .select(['id', 'size'])
    .where('id', 'in', ids)
    .where('status', '=', 'received')
    .orderBy('id')
    .execute();
}

export function findReceivedRows(db: Db, ids: number[]) {
  return db.selectFrom('inbound_messages').select(PROCESSING_COLUMNS).where('id', 'in', ids).where('status', '=', 'received').execute();
}

/**
 * Locks the rows among `ids` that are still `received`, in id order (two
 * transactions sharing rows — a stalled job redelivered — wait for each
 * other instead of deadlocking). Returns them with their current overrides:
 * `held release` may have changed those since they were read.
 */
export async function lockReceivedRows(trx: Db, ids: number[]): Promise<Map<number, string[]>> {
  const rows = await trx
    .selectFrom('inbound_messages')
    .select(['id', 'release_overrides'])
    .where('id', 'in', ids)
    .where('status', '=', 'received')
    .orderBy('id')
    .forUpdate()
    .execute();
  return new Map(rows.map((r) => [r.id, r.release_overrides]));
}

/** Counts a failed processing run, outside the transaction that rolled back; null when the row is no longer `received`. */
export async function countProcessingAttempt(db: Db, id: number): Promise<number | null> {
  const row = await db
    .updateTable('inbound_messages')
    .set({ attempts: sql`attempts + 1` })
    .where('id', '=', id)
    .where('status', '=', 'received')
    .returning('attempts')
    .executeTakeFirst();
  return row?.attempts ?? null;
}
