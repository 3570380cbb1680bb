import { sql } from 'kysely';
import type { Db } from '../database.js';

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
