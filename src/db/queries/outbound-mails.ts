import { sql } from 'kysely';
import type { Db } from '../database.js';

/** Sent, not yet bounced rows with these ids (a bounce to a signed return path). */
export async function sentUnbouncedByIds(db: Db, ids: number[]): Promise<number[]> {
  if (ids.length === 0) return [];
  const rows = await db
    .selectFrom('outbound_mails')
    .select('id')
    .where('id', 'in', ids)
    .where('status', '=', 'sent')
    .where('bounced_at', 'is', null)
    .execute();
  return rows.map((r) => r.id);
}

/** Sent, not yet bounced rows carrying one of these Message-IDs, with their recipient. */
export async function sentUnbouncedByMessageIds(db: Db, messageIds: string[]): Promise<Array<{ id: number; recipient: string }>> {
  if (messageIds.length === 0) return [];
  return db
    .selectFrom('outbound_mails')
    .select(['id', 'recipient'])
    .where('message_id', 'in', messageIds)
    .where('status', '=', 'sent')
    .where('bounced_at', 'is', null)
    .execute();
}

/** Marks sent rows failed by a bounce; a row in any other state (queued above all) is never touched. */
export async function markBounced(db: Db, ids: number[], bounce: { inboundId: number; diagnostic: string }): Promise<void> {
  await db
    .updateTable('outbound_mails')
    .set({ status: 'failed', bounced_at: sql`now()` as never, bounce_inbound_id: bounce.inboundId, last_error: bounce.diagnostic })
    .where('id', 'in', ids)
    .where('status', '=', 'sent')
    .execute();
}
