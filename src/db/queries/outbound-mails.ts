import { sql } from 'kysely';
import type { Db, OutboundMailRow } from '../database.js';

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

/** Records a failed delivery attempt with its new status; returns the row's attempt count. */
export async function recordOutboundAttempt(
  db: Db,
  id: number,
  set: { status: OutboundMailRow['status']; last_error: string },
): Promise<number> {
  const row = await db
    .updateTable('outbound_mails')
    .set({ status: set.status, last_error: set.last_error, attempts: sql`attempts + 1` })
    .where('id', '=', id)
    .returning('attempts')
    .executeTakeFirstOrThrow();
  return row.attempts;
}

/** Settles a row without another attempt: a breaker suppressed it, or its attempts ran out. */
export async function settleOutboundRow(db: Db, id: number, status: 'suppressed' | 'failed', reason: string): Promise<void> {
  await db.updateTable('outbound_mails').set({ status, last_error: reason }).where('id', '=', id).execute();
}

export async function findOutboundStatus(db: Db, id: number): Promise<OutboundMailRow['status'] | null> {
  const row = await db.selectFrom('outbound_mails').select('status').where('id', '=', id).executeTakeFirst();
  return row?.status ?? null;
}

function assertIds(ids: number[]): void {
  if (!ids.every((id) => Number.isSafeInteger(id) && id > 0)) throw new Error(`invalid outbound ids ${ids.join(',')}`);
}

/**
 * The per-recipient advisory locks of a delivery batch, taken in hash order
 * so that two batches sharing recipients wait for each other instead of
 * deadlocking. The breakers count mail already sent to a recipient, so
 * two workers must not both see "9 sent" and both send the 10th: the counts
 * are only exact while its lock is held. Taken by outbox id (the job only
 * knows ids) and returned as SQL text, so it shares one message with BEGIN
 * (see src/db/pipelined-transaction.ts).
 */
export function lockRecipientsSql(ids: number[]): string {
  assertIds(ids);
  return (
    `SELECT pg_advisory_xact_lock(h) FROM ` +
    `(SELECT DISTINCT hashtextextended('rl-out:' || recipient, 0) AS h FROM outbound_mails WHERE id IN (${ids.join(', ')}) ORDER BY 1) AS r`
  );
}

/** The statement that marks rows sent, as SQL text: it travels in one message with the COMMIT. */
export function markSentSql(ids: number[]): string {
  if (ids.length === 0) return '';
  assertIds(ids);
  // A set-password token (sealed, or the raw link of rows from before 0007) is not needed once its mail is out.
  return `UPDATE outbound_mails SET status = 'sent', last_error = NULL, attempts = attempts + 1, sent_at = now(), payload = payload - 'token' - 'url' WHERE id IN (${ids.join(', ')}); `;
}
