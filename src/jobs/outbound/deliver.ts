import { UnrecoverableError } from 'bullmq';
import type { AppContext } from '../../context.js';
import type { Db } from '../../db/database.js';
import { findOutboundStatus, recordOutboundAttempt, settleOutboundRow } from '../../db/queries/outbound-mails.js';
import { isAppError } from '../../errors.js';
import { RetryLaterError } from '../define-job.js';
import { breakerReason } from '../../mail/breakers.js';
import { composeMail, type ComposedMail } from '../../mail/compose.js';
import type { LoadedMail } from '../../db/queries/outbound-mail-contexts.js';

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

/** A row the locked context query did not return: another worker holds it, or it is gone. */
export async function notLoaded(conn: Db, outboundId: number): Promise<DeliveryOutcome> {
  const status = await findOutboundStatus(conn, outboundId);
  if (status === 'queued') return { type: 'locked' };
  return { type: 'skipped', status: status ?? 'missing' };
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
    await settleOutboundRow(conn, row.id, 'suppressed', reason);
    return { outcome: { type: 'suppressed', reason } };
  }
  try {
    return { mail: composeMail(config, row, context) };
  } catch (err) {
    if (!isAppError(err)) throw err;
    const error = `${err.code}: ${err.message}`;
    await recordOutboundAttempt(conn, row.id, { status: 'failed', last_error: error });
    return { outcome: { type: 'permanent', error } };
  }
}

/** A send the relay refused or that never reached it: 5xx is final, anything else is retried until the attempts run out. */
export async function recordSendFailure(conn: Db, outboundId: number, err: unknown): Promise<DeliveryOutcome> {
  const { permanent, text } = describeSendError(err);
  if (permanent) {
    await recordOutboundAttempt(conn, outboundId, { status: 'failed', last_error: text });
    return { type: 'permanent', error: text };
  }
  const attempts = await recordOutboundAttempt(conn, outboundId, { status: 'queued', last_error: text });
  if (attempts >= OUTBOUND_MAX_ATTEMPTS) {
    const error = `gave up after ${attempts} attempts: ${text}`;
    await settleOutboundRow(conn, outboundId, 'failed', error);
    return { type: 'permanent', error };
  }
  return { type: 'temporary', error: text, attempts };
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
