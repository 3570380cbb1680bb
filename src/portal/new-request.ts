import { createHash } from 'node:crypto';
import type { AppContext } from '../context.js';
import type { Config } from '../config.js';
import type { Db, UserRow } from '../db/database.js';
import { addAttachment, addMessage, addParticipant, createTicket } from '../db/queries/tickets.js';
import { ensureUser, findUserByEmail } from '../db/queries/users.js';
import { isOurAddress, isValidEmail, normalizeEmail } from '../mail/address.js';
import { SAFE_CONTENT_TYPE } from '../mail/content-type.js';
import { queueTicketMails } from '../mail/notify.js';

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

/**
 * A filename as the browser sent it, made safe to store and to put back in a
 * Content-Disposition header: no directories, no control characters, no
 * quotes or slashes, bounded length (keeping the extension).
 */
export function sanitizeFilename(name: string): string {
  const base = name.normalize('NFC').split(/[\\/]/).pop() ?? '';
  let clean = base
    .replace(/[\p{Cc}\p{Cf}"<>:|?*]/gu, '')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/^\.+/, '');
  if (clean.length > 200) {
    const dot = clean.lastIndexOf('.');
    const ext = dot > 0 && clean.length - dot <= 16 ? clean.slice(dot) : '';
    clean = clean.slice(0, 200 - ext.length) + ext;
  }
  return clean || 'attachment';
}

/** The files of a multipart form field (an empty file input still submits one nameless, empty part). */
export function filesOf(body: Record<string, unknown>, name = 'files'): File[] {
  const raw = body[name];
  const list = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
  return list.filter((f): f is File => f instanceof File && (f.size > 0 || f.name !== ''));
}

export async function readUploads(files: File[]): Promise<Upload[]> {
  return Promise.all(
    files.map(async (f) => {
      const content = Buffer.from(await f.arrayBuffer());
      return {
        filename: sanitizeFilename(f.name),
        contentType: SAFE_CONTENT_TYPE.test(f.type) ? f.type.toLowerCase() : 'application/octet-stream',
        content,
        sha256: createHash('sha256').update(content).digest('hex'),
      };
    }),
  );
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
  // Copying ourselves in would make every update a mail to our own inbox (the one rule, mail/address.ts).
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
