import type { AppContext } from '../context.js';
import type { Db, Locale } from '../db/database.js';
import { countRecentOutbound, lockStaffNoticeRecipient } from '../db/queries/outbound-mails.js';
import { findUserRoleAndLocale } from '../db/queries/users.js';
import { insertOutboundMail, PAYLOAD_SCHEMAS } from './outbox.js';
import { domainOf } from '../core/address.js';
import type { StaffAuthResult } from './sender-auth.js';

/**
 * A staff reply held as `auth_failed` must not vanish: the operator sees it at
 * warn level, and the staff member gets a short notice saying why and how to
 * fix it. The notice goes only to the staff account's own stored address
 * (a From that matched it), at most once an hour per address (a forged From
 * cannot turn us into a mail cannon), carries no ticket content (the sender
 * was not authenticated), and goes through the outbox, so the loop breakers
 * and the automatic-mail headers apply as to every other mail.
 */

const NOTICE_INTERVAL_MS = 60 * 60_000;

export interface HeldStaffMail {
  inboundId: number;
  staff: { id: number; email: string };
  auth: StaffAuthResult;
}

/** Call inside the transaction that holds the message; returns the outbox ids to enqueue after commit. */
export async function noticeStaffAuthFailure(ctx: Pick<AppContext, 'config' | 'log'>, trx: Db, held: HeldStaffMail): Promise<number[]> {
  const { inboundId, staff, auth } = held;
  ctx.log.warn(
    { inboundId, staffUserId: staff.id, reason: auth.reason, staffAuth: ctx.config.STAFF_AUTH },
    'staff mail held (auth_failed): sender authentication failed; see README "Staff identity"',
  );
  // Serialise notices per address for the rest of the transaction, so two batches cannot both see "none sent".
  await lockStaffNoticeRecipient(trx, staff.email);
  const since = new Date(Date.now() - NOTICE_INTERVAL_MS);
  if ((await countRecentOutbound(trx, 'staff_auth_notice', staff.email, since)) > 0) return [];
  const user = await findUserRoleAndLocale(trx, staff.id);
  if (user?.role !== 'staff') return [];
  const row = await insertOutboundMail(trx, ctx.config, {
    kind: 'staff_auth_notice',
    recipient: staff.email,
    userId: staff.id,
    locale: user.locale as Locale,
    payload: { mode: ctx.config.STAFF_AUTH, reason: auth.reason.slice(0, 200), inboundId },
  });
  return [row.id];
}

/** Template data of the notice (src/mail/compose.ts): the verdict and the staff domain whose records to fix. */
export function staffAuthNoticeView(row: { payload: unknown; recipient: string }) {
  const p = PAYLOAD_SCHEMAS.staff_auth_notice.parse(row.payload);
  return {
    reason: p.reason,
    inboundId: p.inboundId,
    dmarcMode: p.mode === 'dmarc',
    tokenMode: p.mode === 'token',
    staffDomain: domainOf(row.recipient),
  };
}
