import type { Hono } from 'hono';
import type { Config } from '../../config.js';
import { lockUploadQuota, portalUploadBytesToday } from '../../db/queries/attachments.js';
import { addAttachment, addMessage, addParticipant, countCcs, lockTicket, setTicketStatus } from '../../db/queries/tickets.js';
import { ensureUser, findUserByEmail } from '../../db/queries/users.js';
import type { Db, TicketRow } from '../../db/database.js';
import type { Viewer } from '../../db/queries/portal-requests.js';
import { AppError } from '../../errors.js';
import { domainOf, isValidEmail, normalizeEmail } from '../../mail/address.js';
import { queueTicketMails } from '../../mail/notify.js';
import { enqueueAfterCommit } from '../after-commit.js';
import { csrfTokenMatches, field, redirectTo, type PortalContext, type PortalDeps, type PortalEnv } from '../http.js';
import { readStreamedForm } from '../streamed-form.js';
import { parseId, renderThread, SAFE_CONTENT_TYPE, ticketOr404, viewerOf } from './requests.js';

export const MAX_FILES = 10;
export const MAX_COMMENT_CHARS = 64 * 1024;
/** The comment form's path: its body is streamed by its route, which also checks the CSRF token. */
export const COMMENTS_PATH = /^\/requests\/[^/]+\/comments$/;

/**
 * The whole comment form: each file may reach ATTACHMENT_MAX_BYTES, but all of
 * them together at most three times that (each file is held in memory until
 * the comment is stored), plus room for the text and the multipart framing.
 */
export function commentBodyLimit(attachmentMaxBytes: number): number {
  return 3 * attachmentMaxBytes + 4 * MAX_COMMENT_CHARS + 64 * 1024;
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

/** File bytes this user may still upload now; null for staff, who have no quota. */
async function uploadAllowance(db: Db, config: Pick<Config, 'UPLOAD_DAILY_BYTES'>, viewer: Viewer): Promise<number | null> {
  if (viewer.role === 'staff') return null;
  return Math.max(0, config.UPLOAD_DAILY_BYTES - (await portalUploadBytesToday(db, viewer.id)));
}

/** Locks the ticket and refuses writes to a closed one (checked under the lock, not before it). */
async function lockWritable(trx: Db, ticketId: number): Promise<TicketRow> {
  const ticket = await lockTicket(trx, ticketId);
  if (!ticket) throw new AppError('NOT_FOUND');
  if (ticket.status === 'closed') throw new AppError('TICKET_CLOSED');
  return ticket;
}

function closedPage(c: PortalContext, deps: PortalDeps, ticketId: number): Promise<Response> {
  return ticketOr404(deps, ticketId, viewerOf(c)).then((t) => renderThread(c, deps, t, { errorKey: 'request.closed' }, 409));
}

export function registerRequestActionRoutes(app: Hono<PortalEnv>, deps: PortalDeps): void {
  const { ctx } = deps;
  // The request size is capped in app.ts (commentBodyLimit) before anything parses the body; the form is
  // read as a stream (streamed-form.ts), each file cut off at ATTACHMENT_MAX_BYTES or the user's quota.
  app.post('/requests/:id/comments', async (c) => {
    const viewer = viewerOf(c);
    const ticket = await ticketOr404(deps, parseId(c.req.param('id')), viewer);
    if (ticket.status === 'closed') return closedPage(c, deps, ticket.id);
    const allowance = await uploadAllowance(ctx.db, ctx.config, viewer);
    const form = await readStreamedForm(c.req.raw, {
      maxFileBytes: ctx.config.ATTACHMENT_MAX_BYTES,
      maxFiles: MAX_FILES,
      maxFieldBytes: 4 * MAX_COMMENT_CHARS,
      quotaBytes: allowance ?? Infinity,
      tokenValid: (token) => csrfTokenMatches(c, deps, token),
    });
    const text = field(form.fields, 'body');
    const errorKey = !text
      ? 'request.comment_required'
      : form.truncated.has('body') || text.length > MAX_COMMENT_CHARS
        ? 'request.comment_too_long'
        : form.tooManyFiles
          ? 'request.too_many_files'
          : null;
    if (errorKey) return renderThread(c, deps, ticket, { errorKey, errorN: MAX_FILES, commentDraft: text }, 422);
    const uploads = form.files.map((f) => ({
      filename: sanitizeFilename(f.filename),
      contentType: SAFE_CONTENT_TYPE.test(f.mimeType) ? f.mimeType.toLowerCase() : 'application/octet-stream',
      content: f.content,
      sha256: f.sha256,
    }));
    const uploadBytes = uploads.reduce((n, u) => n + u.content.length, 0);

    let outboxIds: number[];
    let messageId: number;
    try {
      ({ outboxIds, messageId } = await ctx.db.transaction().execute(async (trx) => {
        const locked = await lockWritable(trx, ticket.id);
        // Checked again under a per-user lock: another portal process may have stored an upload meanwhile.
        if (allowance !== null && uploadBytes > 0) {
          await lockUploadQuota(trx, viewer.id);
          if ((await portalUploadBytesToday(trx, viewer.id)) + uploadBytes > ctx.config.UPLOAD_DAILY_BYTES)
            throw new AppError('UPLOAD_QUOTA', 'upload quota exceeded');
        }
        const message = await addMessage(trx, {
          ticketId: ticket.id,
          authorId: viewer.id,
          visibility: 'public',
          via: 'portal',
          bodyText: text,
        });
        for (const u of uploads) await addAttachment(trx, { messageId: message.id, ...u });
        // A customer's reply puts the ball back in support's court; staff replies leave status to staff.
        if (viewer.role !== 'staff' && (locked.status === 'solved' || locked.status === 'pending')) {
          await setTicketStatus(trx, ticket.id, 'open');
        }
        const ids = await queueTicketMails(trx, ctx.config, {
          type: 'message_added',
          ticketId: ticket.id,
          messageId: message.id,
          authorId: viewer.id,
          visibility: 'public',
        });
        return { outboxIds: ids, messageId: message.id };
      }));
    } catch (err) {
      if (err instanceof AppError && err.code === 'TICKET_CLOSED') return closedPage(c, deps, ticket.id);
      throw err;
    }
    await enqueueAfterCommit(ctx, outboxIds);
    return redirectTo(c, deps, `/requests/${ticket.id}?notice=commented#message-${messageId}`);
  });

  app.post('/requests/:id/ccs', async (c) => {
    const viewer = viewerOf(c);
    const ticket = await ticketOr404(deps, parseId(c.req.param('id')), viewer);
    if (ticket.status === 'closed') return closedPage(c, deps, ticket.id);
    const body = await c.req.parseBody();
    const email = normalizeEmail(field(body, 'email'));
    if (!isValidEmail(email)) return renderThread(c, deps, ticket, { ccErrorKey: 'form.invalid_email', ccDraft: email }, 422);
    // Copying ourselves in would make every update a mail to our own inbox: a loop.
    if (ctx.config.SUPPORT_ADDRESSES.includes(email) || domainOf(email) === ctx.config.MAIL_DOMAIN) {
      return renderThread(c, deps, ticket, { ccErrorKey: 'request.cc_not_allowed', ccDraft: email }, 422);
    }
    // Staff are copied in by staff; with closed registration a CC never creates an account (issue #12).
    // One answer for both, the same as for our own addresses.
    const existing = await findUserByEmail(ctx.db, email);
    if (existing?.role === 'staff' || (!existing && ctx.config.REGISTRATION === 'closed')) {
      return renderThread(c, deps, ticket, { ccErrorKey: 'request.cc_not_allowed', ccDraft: email }, 422);
    }
    try {
      const added = await ctx.db.transaction().execute(async (trx) => {
        await lockWritable(trx, ticket.id);
        if ((await countCcs(trx, ticket.id)) >= ctx.config.MAX_CCS) return false;
        const { user } = await ensureUser(trx, { email, locale: ctx.config.DEFAULT_LOCALE });
        await addParticipant(trx, ticket.id, user.id, 'cc');
        return true;
      });
      if (!added) return renderThread(c, deps, ticket, { ccErrorKey: 'request.too_many_ccs', ccDraft: email }, 422);
    } catch (err) {
      if (err instanceof AppError && err.code === 'TICKET_CLOSED') return closedPage(c, deps, ticket.id);
      throw err;
    }
    return redirectTo(c, deps, `/requests/${ticket.id}?notice=cc_added`);
  });

  app.post('/requests/:id/solve', async (c) => {
    const viewer = viewerOf(c);
    const ticket = await ticketOr404(deps, parseId(c.req.param('id')), viewer);
    let outboxIds: number[];
    try {
      outboxIds = await ctx.db.transaction().execute(async (trx) => {
        const locked = await lockWritable(trx, ticket.id);
        if (locked.status === 'solved') return [];
        await setTicketStatus(trx, ticket.id, 'solved');
        // Staff hear when a customer closes the matter themselves; staff solving tell nobody (as by mail).
        if (viewer.role === 'staff') return [];
        return queueTicketMails(trx, ctx.config, { type: 'customer_solved', ticketId: ticket.id, authorId: viewer.id });
      });
    } catch (err) {
      if (err instanceof AppError && err.code === 'TICKET_CLOSED') return closedPage(c, deps, ticket.id);
      throw err;
    }
    await enqueueAfterCommit(ctx, outboxIds);
    return redirectTo(c, deps, `/requests/${ticket.id}?notice=solved`);
  });
}
