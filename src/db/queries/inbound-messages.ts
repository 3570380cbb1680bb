import { sql } from 'kysely';
import type { Db, InboundMessageRow } from '../database.js';

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

/**
 * `held release`: back to `received` with the waivers recorded. False when the row
 * is no longer held (a concurrent release or delete); the pipeline's own row lock
 * and status check make this safe against a running worker.
 */
export async function resetHeldForRelease(db: Db, id: number, releaseOverrides: string[]): Promise<boolean> {
  const updated = await db
    .updateTable('inbound_messages')
    .set({
      status: 'received',
      reason: null,
      error: null,
      ticket_id: null,
      processed_at: null,
      attempts: 0,
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
export async function countPendingInbound(db: Db): Promise<Array<{ label: string | null; n: number }>> {
  const { rows } = await sql<{
    label: string | null;
    n: number;
  }>`select null as label, count(*) as n from inbound_messages where status = 'received'`.execute(db);
  return rows;
}

/** /metrics: held messages by reason. */
export async function countHeldInboundByReason(db: Db): Promise<Array<{ label: string | null; n: number }>> {
  const { rows } = await sql<{
    label: string | null;
    n: number;
  }>`select reason as label, count(*) as n from inbound_messages where status = 'held' group by 1`.execute(db);
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
      status: 'received',
      reason: null,
      error: null,
      ticket_id: null,
      processed_at: null,
      attempts: 0,
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

/** What processing reads of a row before any transaction: the bytes and envelope to parse. */
export const PROCESSING_COLUMNS = ['id', 'raw', 'mail_from', 'rcpt_to', 'client_address', 'helo', 'release_overrides'] as const;

/** The rows among `ids` still waiting to be processed. */
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
