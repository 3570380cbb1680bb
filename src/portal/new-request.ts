import type { AppContext } from '../context.js';
import type { Config } from '../config.js';
import type { Db, UserRow } from '../db/database.js';
import { lockUploadQuota, portalUploadBytesToday } from '../db/queries/attachments.js';
import type { Viewer } from '../db/queries/portal-requests.js';
import { addAttachment } from '../db/queries/attachments.js';
import { addMessage } from '../db/queries/messages.js';
import { addParticipant } from '../db/queries/ticket-participants.js';
import { createTicket } from '../db/queries/tickets.js';
import { ensureUser, findUserByEmail } from '../db/queries/users.js';
import { sanitizeFilename } from '../mail/filename.js';
import { isOurAddress, isValidEmail, normalizeEmail } from '../core/address.js';
import { SAFE_CONTENT_TYPE } from '../mail/content-type.js';
import { queueTicketMails } from '../mail/notify.js';
import { AppError } from '../errors.js';
import { csrfTokenMatches, type PortalContext, type PortalDeps } from './http.js';
import { readStreamedForm, type StreamedForm } from './streamed-form.js';

/**
 * What a new portal request and a portal reply share: reading uploads, the
 * CC rules, and writing a new ticket through the same rows and outbox events
 * as an inbound mail (ticket, requester, first message, files, CCs, then
 * acknowledgement and staff notification from queueTicketMails).
 */

export interface Upload {
  filename: string;
  contentType: string;
  content: Buffer;
  sha256: string;
}

/** Forms that carry uploads (a reply, and a new request): streamed by their routes, which check the CSRF token. */
export const UPLOAD_PATH = /^\/requests\/(?:[^/]+\/comments|new)$/;

export const MAX_FILES = 10;
/** A reply, or a new request's description. */
export const MAX_COMMENT_CHARS = 64 * 1024;

/**
 * The whole upload form: each file may reach ATTACHMENT_MAX_BYTES, but all of
 * them together at most three times that (each file is held in memory until
 * its reply or request is stored), plus room for the text and the framing.
 */
export function uploadFormLimit(attachmentMaxBytes: number): number {
  return 3 * attachmentMaxBytes + 4 * MAX_COMMENT_CHARS + 64 * 1024;
}

/**
 * Reads an upload form as a stream (streamed-form.ts) with the portal's limits:
 * uploadFormLimit for the whole body, ATTACHMENT_MAX_BYTES per file, MAX_FILES,
 * and `allowance` file bytes in all (null: no quota). The CSRF token field is
 * checked as it arrives.
 */
export function readUploadForm(c: PortalContext, deps: PortalDeps, allowance: number | null): Promise<StreamedForm> {
  return readStreamedForm(c.req.raw, {
    maxBodyBytes: uploadFormLimit(deps.ctx.config.ATTACHMENT_MAX_BYTES),
    maxFileBytes: deps.ctx.config.ATTACHMENT_MAX_BYTES,
    maxFiles: MAX_FILES,
    maxFieldBytes: 4 * MAX_COMMENT_CHARS,
    quotaBytes: allowance ?? Infinity,
    tokenValid: (token) => csrfTokenMatches(c, deps, token),
  });
}

/** The streamed files as stored uploads: name and type made safe. */
export function uploadsOf(form: StreamedForm): Upload[] {
  return form.files.map((f, i) => {
    const contentType = SAFE_CONTENT_TYPE.test(f.mimeType) ? f.mimeType.toLowerCase() : 'application/octet-stream';
    return { filename: sanitizeFilename(f.filename, contentType, i + 1), contentType, content: f.content, sha256: f.sha256 };
  });
}

/** File bytes this user may still upload through the portal now (UPLOAD_DAILY_BYTES); null for staff, who have no quota. */
export async function uploadAllowance(db: Db, config: Pick<Config, 'UPLOAD_DAILY_BYTES'>, user: Viewer): Promise<number | null> {
  if (user.role === 'staff') return null;
  return Math.max(0, config.UPLOAD_DAILY_BYTES - (await portalUploadBytesToday(db, user.id)));
}

/**
 * The quota again, in the transaction that stores the uploads and under a
 * per-user lock: another portal process may have stored an upload since the
 * allowance was read. Throws UPLOAD_QUOTA (the transaction rolls back).
 */
export async function recheckUploadQuota(
  trx: Db,
  config: Pick<Config, 'UPLOAD_DAILY_BYTES'>,
  userId: number,
  allowance: number | null,
  uploads: Upload[],
): Promise<void> {
  const bytes = uploads.reduce((n, u) => n + u.content.length, 0);
  if (allowance === null || bytes === 0) return;
  await lockUploadQuota(trx, userId);
  if ((await portalUploadBytesToday(trx, userId)) + bytes > config.UPLOAD_DAILY_BYTES)
    throw new AppError('UPLOAD_QUOTA', 'upload quota exceeded');
}

/** "a@x, b@y; c@z" or one per line → normalised, de-duplicated addresses (validity is checked by the caller). */
export function parseAddressList(raw: string): string[] {
  return [
    ...new Set(
      raw
        .split(/[\s,;]+/)
        .map(normalizeEmail)
        .filter(Boolean),
    ),
  ];
}

type CcConfig = Pick<Config, 'SUPPORT_ADDRESSES' | 'MAIL_DOMAIN' | 'REGISTRATION'>;

/** The rules that need no account lookup: a valid address, and never one of ours (every update would mail our own inbox). */
export function ccAddressRefusal(config: CcConfig, email: string): string | null {
  if (!isValidEmail(email)) return 'form.invalid_email';
  // Copying ourselves in would make every update a mail to our own inbox (the one rule, core/address.ts).
  if (isOurAddress(config, email)) return 'request.cc_not_allowed';
  return null;
}

/**
 * The rules that depend on the accounts: staff are copied in by staff, and
 * with closed registration a CC never creates an account (issue #12). One
 * answer for both, the same as for our own addresses.
 */
export function ccAccountRefusal(config: CcConfig, existing: Pick<UserRow, 'role'> | undefined): string | null {
  return existing?.role === 'staff' || (!existing && config.REGISTRATION === 'closed') ? 'request.cc_not_allowed' : null;
}

/** Every CC rule, for a signed-in user adding an address: the error key, or null when it may be added. */
export async function ccRefusal(ctx: AppContext, email: string): Promise<string | null> {
  return ccAddressRefusal(ctx.config, email) ?? ccAccountRefusal(ctx.config, await findUserByEmail(ctx.db, email));
}

export interface NewRequest {
  requesterId: number;
  subject: string;
  body: string;
  uploads: Upload[];
  /** Already checked against the CC rules. */
  ccEmails: string[];
}

/** Writes the ticket and queues its mails in the caller's transaction; returns the ticket and the outbox ids to enqueue after commit. */
export async function createRequestTicket(trx: Db, config: Config, r: NewRequest): Promise<{ ticketId: number; outboxIds: number[] }> {
  const ticket = await createTicket(trx, { subject: r.subject, requesterId: r.requesterId, via: 'portal' });
  const message = await addMessage(trx, {
    ticketId: ticket.id,
    authorId: r.requesterId,
    visibility: 'public',
    via: 'portal',
    bodyText: r.body,
  });
  for (const u of r.uploads) await addAttachment(trx, { messageId: message.id, ...u });
  for (const email of r.ccEmails.slice(0, config.MAX_CCS)) {
    const { user } = await ensureUser(trx, { email, locale: config.DEFAULT_LOCALE });
    if (user.id !== r.requesterId) await addParticipant(trx, ticket.id, user.id, 'cc');
  }
  const outboxIds = await queueTicketMails(trx, config, {
    type: 'ticket_created',
    ticketId: ticket.id,
    messageId: message.id,
    authorId: r.requesterId,
    informCcs: true,
  });
  return { ticketId: ticket.id, outboxIds };
}
