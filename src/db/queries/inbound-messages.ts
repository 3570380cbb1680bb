import { sql } from 'kysely';
import type { Db } from '../database.js';

export interface InboundEnvelope {
  mailFrom: string;
  rcptTo: string[];
  clientAddress: string;
  helo: string;
  tls: boolean;
}

/** Commits the exact received bytes plus envelope; the caller answers 250 only after this resolves. */
export async function insertInboundMessage(db: Db, raw: Buffer, env: InboundEnvelope): Promise<number> {
  const row = await db
    .insertInto('inbound_messages')
    .values({
      raw,
      size: raw.length,
      mail_from: env.mailFrom,
      rcpt_to: env.rcptTo,
      client_address: env.clientAddress,
      helo: env.helo,
      tls: env.tls,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
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
