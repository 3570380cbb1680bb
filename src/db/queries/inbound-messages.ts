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
