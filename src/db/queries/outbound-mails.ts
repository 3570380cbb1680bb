import { sql, type Insertable } from 'kysely';
import type { Db, OutboundKind, OutboundMailRow, OutboundMailsTable, LabelledCount } from '../database.js';
import type { UserRef } from './users.js';

/** An outbox row as written (src/mail/outbox.ts validates the payload and mints the Message-ID). */
export type NewOutboundMail = Insertable<OutboundMailsTable>;

export async function insertOutboundMailRow(db: Db, values: NewOutboundMail): Promise<OutboundMailRow> {
  return db.insertInto('outbound_mails').values(values).returningAll().executeTakeFirstOrThrow();
}

/**
 * Several outbox rows in one statement; returns their ids (in no particular order).
 * `skipDuplicates`: rows a unique index already has (one digest per staff member and day) are left out.
 */
export async function insertOutboundMailRows(
  db: Db,
  values: NewOutboundMail[],
  opts: { skipDuplicates?: boolean } = {},
): Promise<number[]> {
  if (values.length === 0) return [];
  let insert = db.insertInto('outbound_mails').values(values);
  if (opts.skipDuplicates) insert = insert.onConflict((oc) => oc.doNothing());
  const rows = await insert.returning('id').execute();
  return rows.map((r) => r.id);
}

/** Queued rows older than `olderThan`, oldest first: the sweeper re-enqueues what Redis missed. */
export async function findQueuedOutboundIds(db: Db, olderThan: Date, limit: number): Promise<number[]> {
  const rows = await db
    .selectFrom('outbound_mails')
    .select('id')
    .where('status', '=', 'queued')
    .where('created_at', '<', olderThan)
    .orderBy('created_at')
    .limit(limit)
    .execute();
  return rows.map((r) => r.id);
}

/** How many mails of a kind went (or are going) to one address since a moment: per-address rate limits of notices. */
export async function countRecentOutbound(db: Db, kind: OutboundKind, recipient: string, since: Date): Promise<number> {
  const row = await db
    .selectFrom('outbound_mails')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('recipient', '=', recipient)
    .where('created_at', '>=', since)
    .where('kind', '=', kind)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Serialises staff auth notices to one address for the rest of the transaction, so two batches cannot both see "none sent". */
export async function lockStaffNoticeRecipient(trx: Db, email: string): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(hashtextextended(${`rl-staff-notice:${email}`}, 0))`.execute(trx);
}

/**
 * The staff notified about the newest customer message before `beforeMessageId`
 * (a new ticket or a customer reply): the agents who may be answering it right now.
 */
export function listNotifiedStaff(db: Db, ticketId: number, beforeMessageId: number): Promise<UserRef[]> {
  return db
    .selectFrom('outbound_mails as o')
    .innerJoin('users as u', 'u.id', 'o.user_id')
    .select(['u.id', 'u.email', 'u.role', 'u.locale'])
    .distinct()
    .where('o.ticket_id', '=', ticketId)
    .where('o.kind', '=', 'staff_notification')
    .where('u.role', '=', 'staff')
    .where(sql<string>`o.payload ->> 'event'`, 'in', ['ticket_created', 'customer_reply'])
    .where('o.ticket_message_id', '=', (eb) =>
      eb
        .selectFrom('messages as m')
        .innerJoin('users as a', 'a.id', 'm.author_id')
        .select('m.id')
        .where('m.ticket_id', '=', ticketId)
        .where('m.visibility', '=', 'public')
        .where('a.role', '!=', 'staff')
        .where('m.id', '<', beforeMessageId)
        .orderBy('m.id', 'desc')
        .limit(1),
    )
    .orderBy('u.id')
    .execute();
}

/** `requeue`: failed rows (one, or all) back to queued with their attempts reset; returns how many. */
export async function requeueFailedOutbound(db: Db, id: number | null): Promise<number> {
  let q = db
    .updateTable('outbound_mails')
    .set({ status: 'queued', attempts: 0, last_error: sql`coalesce(last_error, '') || ' [requeued]'` as never })
    .where('status', '=', 'failed');
  if (id !== null) q = q.where('id', '=', id);
  const res = await q.executeTakeFirst();
  return Number(res.numUpdatedRows);
}

/** Before a held inbound message is deleted: outbox rows it bounced keep their failure but lose the reference. */
export async function clearBounceReference(db: Db, inboundId: number): Promise<void> {
  await db.updateTable('outbound_mails').set({ bounce_inbound_id: null }).where('bounce_inbound_id', '=', inboundId).execute();
}

/** /metrics: outbox rows waiting to be sent. */
export async function countQueuedOutbound(db: Db): Promise<LabelledCount[]> {
  const { rows } = await sql<LabelledCount>`select null as label, count(*) as n from outbound_mails where status = 'queued'`.execute(db);
  return rows;
}

/** /metrics: outbox rows that failed permanently, by mail kind. */
export async function countFailedOutboundByKind(db: Db): Promise<LabelledCount[]> {
  const { rows } =
    await sql<LabelledCount>`select kind as label, count(*) as n from outbound_mails where status = 'failed' group by 1`.execute(db);
  return rows;
}

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
