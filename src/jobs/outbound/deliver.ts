import { UnrecoverableError } from 'bullmq';
import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import type { Db, OutboundMailRow } from '../../db/database.js';
import { isAppError } from '../../errors.js';
import { RetryLaterError } from '../define-job.js';
import { breakerReason } from '../../mail/breakers.js';
import { composeMail, type ComposedMail } from '../../mail/compose.js';
import type { LoadedMail } from '../../mail/mail-context.js';
import { deliverOutbound } from './deliver-batch.js';

/**
 * Sends one outbox row. The row is the source of truth, the job only a
 * wake-up call, so this is safe to run any number of times:
 *  - the row is locked for the whole send (behind a per-recipient advisory
 *    lock, then FOR UPDATE SKIP LOCKED), so two workers holding the same job
 *    (a stalled-job recovery, a sweep racing a retry) can never both send;
 *    the loser waits or retries and finds it sent;
 *  - anything but `queued` is done and skipped.
 * Outcomes: relay accepted → `sent`; connection error or 4xx → attempt and
 * error recorded, job retried with backoff; 5xx or a row that cannot be
 * rendered → `failed` with the reason, UnrecoverableError; loop breaker →
 * `suppressed` with the reason.
 * The one window left is a crash between the relay's 250 and our commit:
 * the row is still `queued` and the mail may go out twice — at-least-once,
 * never at-most-zero.
 */

/** After this many temporary failures the row is marked failed (matches the send-mail job's attempts). */
export const OUTBOUND_MAX_ATTEMPTS = 12;

export type DeliveryOutcome =
  | { type: 'skipped'; status: string }
  | { type: 'locked' }
  | { type: 'sent'; response: string }
  | { type: 'suppressed'; reason: string }
  | { type: 'temporary'; error: string; attempts: number }
  | { type: 'permanent'; error: string }
  /** The row's own transaction failed before sending (database trouble, a bug): retried like any error. */
  | { type: 'error'; error: string };

interface SmtpLikeError {
  responseCode?: number;
  response?: string;
  code?: string;
  message?: string;
}

/** The relay's reply when there was one ("550 5.1.1 …"), else the socket-level error. */
export function describeSendError(err: unknown): { permanent: boolean; text: string } {
  const e = (err ?? {}) as SmtpLikeError;
  const code = typeof e.responseCode === 'number' ? e.responseCode : undefined;
  const reply = e.response ? String(e.response).replace(/\s+/g, ' ').trim() : '';
  const text = reply
    ? code && !reply.startsWith(String(code))
      ? `${code} ${reply}`
      : reply
    : `${e.code ?? 'ERROR'}: ${e.message ?? String(err)}`;
  return { permanent: code !== undefined && code >= 500 && code < 600, text: text.slice(0, 1000) };
}

/** Records a failed attempt; returns the row's attempt count. */
async function recordAttempt(trx: Db, id: number, set: { status: OutboundMailRow['status']; last_error: string }): Promise<number> {
  const row = await trx
    .updateTable('outbound_mails')
    .set({ status: set.status, last_error: set.last_error, attempts: sql`attempts + 1` })
    .where('id', '=', id)
    .returning('attempts')
    .executeTakeFirstOrThrow();
  return row.attempts;
}

/** A row the locked context query did not return: another worker holds it, or it is gone. */
export async function notLoaded(conn: Db, outboundId: number): Promise<DeliveryOutcome> {
  const other = await conn.selectFrom('outbound_mails').select('status').where('id', '=', outboundId).executeTakeFirst();
  if (other?.status === 'queued') return { type: 'locked' };
  return { type: 'skipped', status: other?.status ?? 'missing' };
}

/** Breakers and rendering for a locked row: either its outcome already, or the mail to send. */
export async function prepare(
  conn: Db,
  config: AppContext['config'],
  { row, context }: LoadedMail,
): Promise<{ outcome: DeliveryOutcome } | { mail: ComposedMail }> {
  if (row.status !== 'queued') return { outcome: { type: 'skipped', status: row.status } };
  const reason = breakerReason(config, row, context.counts);
  if (reason) {
    await conn.updateTable('outbound_mails').set({ status: 'suppressed', last_error: reason }).where('id', '=', row.id).execute();
    return { outcome: { type: 'suppressed', reason } };
  }
  try {
    return { mail: composeMail(config, row, context) };
  } catch (err) {
    if (!isAppError(err)) throw err;
    const error = `${err.code}: ${err.message}`;
    await recordAttempt(conn, row.id, { status: 'failed', last_error: error });
    return { outcome: { type: 'permanent', error } };
  }
}

/** A send the relay refused or that never reached it: 5xx is final, anything else is retried until the attempts run out. */
export async function recordSendFailure(conn: Db, outboundId: number, err: unknown): Promise<DeliveryOutcome> {
  const { permanent, text } = describeSendError(err);
  if (permanent) {
    await recordAttempt(conn, outboundId, { status: 'failed', last_error: text });
    return { type: 'permanent', error: text };
  }
  const attempts = await recordAttempt(conn, outboundId, { status: 'queued', last_error: text });
  if (attempts >= OUTBOUND_MAX_ATTEMPTS) {
    const error = `gave up after ${attempts} attempts: ${text}`;
    await conn.updateTable('outbound_mails').set({ status: 'failed', last_error: error }).where('id', '=', outboundId).execute();
    return { type: 'permanent', error };
  }
  return { type: 'temporary', error: text, attempts };
}

/** The statement that marks rows sent; it travels in one message with the COMMIT. */
export function markSentSql(ids: number[]): string {
  if (ids.length === 0) return '';
  if (!ids.every(Number.isSafeInteger)) throw new Error(`invalid outbound ids ${ids.join(',')}`);
  // A set-password token (sealed, or the raw link of rows from before 0007) is not needed once its mail is out.
  return `UPDATE outbound_mails SET status = 'sent', last_error = NULL, attempts = attempts + 1, sent_at = now(), payload = payload - 'token' - 'url' WHERE id IN (${ids.join(', ')}); `;
}

/**
 * One transaction on one reserved connection. On a small machine each
 * statement's syscalls dominate, so `first` shares one simple-protocol
 * message with BEGIN and the body's `last` one with COMMIT: the happy path
 * is three round trips (BEGIN + recipient lock, the locked rows with their
 * context (prepared), the `sent` mark + COMMIT).
 */
export async function transact<T>(ctx: AppContext, first: string, body: (conn: Db) => Promise<{ value: T; last: string }>): Promise<T> {
  return ctx.db.connection().execute(async (conn) => {
    let open = true;
    try {
      // The relay already has the mail when we commit: a `sent` mark lost to a
      // crash means one duplicate (at-least-once), never a lost mail, so this
      // transaction need not wait for its WAL flush.
      await sql.raw(`BEGIN; SET LOCAL synchronous_commit = off; ${first}`).execute(conn);
      const { value, last } = await body(conn);
      await sql.raw(`${last}COMMIT`).execute(conn);
      open = false;
      return value;
    } catch (err) {
      if (open)
        await sql
          .raw('ROLLBACK')
          .execute(conn)
          .catch(() => {});
      throw err;
    }
  });
}

/** Logs the outcome; throws what BullMQ must see (retry later, or a permanent failure). */
export function settleOutcome(ctx: AppContext, outboundId: number, outcome: DeliveryOutcome): void {
  const log = ctx.log;
  switch (outcome.type) {
    case 'sent':
      log.info({ outboundId, response: outcome.response }, 'mail sent');
      return;
    case 'skipped':
      log.debug({ outboundId, status: outcome.status }, 'outbound mail not queued; nothing to do');
      return;
    case 'suppressed':
      log.warn({ outboundId, reason: outcome.reason }, 'outbound mail suppressed');
      return;
    case 'locked':
      // Another worker is sending it right now; retrying later finds it sent.
      throw new RetryLaterError(`outbound mail ${outboundId} is being delivered by another worker`);
    case 'temporary':
      throw new RetryLaterError(`attempt ${outcome.attempts}: ${outcome.error}`);
    case 'error':
      throw new Error(`outbound mail ${outboundId}: ${outcome.error}`);
    case 'permanent':
      log.warn({ outboundId, error: outcome.error }, 'outbound mail failed permanently');
      throw new UnrecoverableError(`outbound mail ${outboundId} failed permanently: ${outcome.error}`);
  }
}

/** One row, as tests and tools deliver it: a batch of one; throws what its job would. */
export async function deliverOutboundMail(ctx: AppContext, outboundId: number): Promise<void> {
  if (!Number.isSafeInteger(outboundId) || outboundId <= 0) throw new UnrecoverableError(`invalid outbound id ${outboundId}`);
  const outcomes = await deliverOutbound(ctx, [outboundId]);
  settleOutcome(ctx, outboundId, outcomes.get(outboundId)!);
}
