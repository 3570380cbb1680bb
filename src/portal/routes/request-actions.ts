import type { Hono } from 'hono';
import { addAttachment } from '../../db/queries/attachments.js';
import { addMessage } from '../../db/queries/messages.js';
import { addParticipant, countCcs, participantRole, removeCc } from '../../db/queries/ticket-participants.js';
import { lockTicket, reopenOnCustomerReply, setTicketStatus } from '../../db/queries/tickets.js';
import { ensureUser, findUserByEmail } from '../../db/queries/users.js';
import type { Db, TicketRow } from '../../db/database.js';
import { AppError } from '../../errors.js';
import { normalizeEmail } from '../../core/address.js';
import { queueTicketMails } from '../../mail/notify.js';
import { enqueueAfterCommit } from '../../jobs/after-commit.js';
import { field, redirectTo, type PortalContext, type PortalDeps, type PortalEnv } from '../http.js';
import {
  ccAccountRefusal,
  ccAddressRefusal,
  MAX_COMMENT_CHARS,
  MAX_FILES,
  readUploadForm,
  recheckUploadQuota,
  uploadAllowance,
  uploadsOf,
} from '../new-request.js';
import { parseId, participantTicketOr404, renderThread, ticketOr404, viewerOf } from './requests.js';

export { MAX_COMMENT_CHARS, MAX_FILES };

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
  // The form is read as a stream (streamed-form.ts): the whole form is cut off at uploadFormLimit, each
  // file at ATTACHMENT_MAX_BYTES, all files at the user's quota.
  app.post('/requests/:id/comments', async (c) => {
    const viewer = viewerOf(c);
    const ticket = await participantTicketOr404(deps, parseId(c.req.param('id')), viewer);
    if (ticket.status === 'closed') return closedPage(c, deps, ticket.id);
    const allowance = await uploadAllowance(ctx.db, ctx.config, viewer);
    const form = await readUploadForm(c, deps, allowance);
    const text = field(form.fields, 'body');
    const errorKey = !text
      ? 'request.comment_required'
      : form.truncated.has('body') || text.length > MAX_COMMENT_CHARS
        ? 'request.comment_too_long'
        : form.tooManyFiles
          ? 'request.too_many_files'
          : null;
    if (errorKey) return renderThread(c, deps, ticket, { errorKey, errorN: MAX_FILES, commentDraft: text }, 422);
    const uploads = uploadsOf(form);

    let outboxIds: number[];
    let messageId: number;
    try {
      ({ outboxIds, messageId } = await ctx.db.transaction().execute(async (trx) => {
        const locked = await lockWritable(trx, ticket.id);
        // Checked again under a per-user lock: another portal process may have stored an upload meanwhile.
        await recheckUploadQuota(trx, ctx.config, viewer.id, allowance, uploads);
        const message = await addMessage(trx, {
          ticketId: ticket.id,
          authorId: viewer.id,
          visibility: 'public',
          via: 'portal',
          bodyText: text,
        });
        for (const u of uploads) await addAttachment(trx, { messageId: message.id, ...u });
        if (viewer.role !== 'staff') await reopenOnCustomerReply(trx, { id: ticket.id, status: locked.status });
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
    const ticket = await participantTicketOr404(deps, parseId(c.req.param('id')), viewer);
    if (ticket.status === 'closed') return closedPage(c, deps, ticket.id);
    const body = await c.req.parseBody();
    const email = normalizeEmail(field(body, 'email'));
    const existing = await findUserByEmail(ctx.db, email);
    const refusal = ccAddressRefusal(ctx.config, email) ?? ccAccountRefusal(ctx.config, existing);
    if (refusal) return renderThread(c, deps, ticket, { ccErrorKey: refusal, ccDraft: email }, 422);
    try {
      const outcome = await ctx.db.transaction().execute(async (trx) => {
        await lockWritable(trx, ticket.id);
        // Already on the request (as CC or requester): said so, rather than a "CC was added" that changed nothing.
        if (existing && (await participantRole(trx, ticket.id, existing.id)) !== null) return 'already';
        if ((await countCcs(trx, ticket.id)) >= ctx.config.MAX_CCS) return 'full';
        const { user } = await ensureUser(trx, { email, locale: ctx.config.DEFAULT_LOCALE });
        return (await addParticipant(trx, ticket.id, user.id, 'cc')) ? 'added' : 'already';
      });
      if (outcome === 'full') return renderThread(c, deps, ticket, { ccErrorKey: 'request.too_many_ccs', ccDraft: email }, 422);
      if (outcome === 'already') return renderThread(c, deps, ticket, { ccErrorKey: 'request.cc_already', ccDraft: email }, 422);
    } catch (err) {
      if (err instanceof AppError && err.code === 'TICKET_CLOSED') return closedPage(c, deps, ticket.id);
      throw err;
    }
    return redirectTo(c, deps, `/requests/${ticket.id}?notice=cc_added`);
  });

  // The requester and CCs (and staff) take a CC off the request; the requester cannot be removed.
  app.post('/requests/:id/ccs/remove', async (c) => {
    const viewer = viewerOf(c);
    const ticket = await participantTicketOr404(deps, parseId(c.req.param('id')), viewer);
    if (ticket.status === 'closed') return closedPage(c, deps, ticket.id);
    const body = await c.req.parseBody();
    const userId = /^\d{1,15}$/.test(field(body, 'user_id')) ? Number(field(body, 'user_id')) : null;
    let removed: boolean;
    try {
      removed = await ctx.db.transaction().execute(async (trx) => {
        await lockWritable(trx, ticket.id);
        return userId !== null && removeCc(trx, ticket.id, userId);
      });
    } catch (err) {
      if (err instanceof AppError && err.code === 'TICKET_CLOSED') return closedPage(c, deps, ticket.id);
      throw err;
    }
    if (!removed) return renderThread(c, deps, ticket, { ccErrorKey: 'request.cc_not_found' }, 422);
    // Whoever took themselves off can no longer see the request.
    if (userId === viewer.id && viewer.role !== 'staff') return redirectTo(c, deps, '/requests');
    return redirectTo(c, deps, `/requests/${ticket.id}?notice=cc_removed`);
  });

  app.post('/requests/:id/solve', async (c) => {
    const viewer = viewerOf(c);
    const ticket = await participantTicketOr404(deps, parseId(c.req.param('id')), viewer);
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
