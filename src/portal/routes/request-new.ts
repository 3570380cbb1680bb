import type { Hono } from 'hono';
import { isSecretShaped, randomSecret, seal, sha256 } from '../../core/secrets.js';
import { insertSubmission, submissionExists, takeSubmission } from '../../db/queries/portal-submissions.js';
import { ensureUser, findUserByEmail, markUserVerified } from '../../db/queries/users.js';
import { isOurAddress, isValidEmail, normalizeEmail } from '../../core/address.js';
import { insertOutboundMail } from '../../mail/outbox.js';
import { enqueueAfterCommit } from '../../jobs/after-commit.js';
import { clientIp, field, redirectTo, renderPage, type PortalContext, type PortalDeps, type PortalEnv } from '../http.js';
import {
  ccAccountRefusal,
  ccAddressRefusal,
  ccRefusal,
  createRequestTicket,
  MAX_COMMENT_CHARS,
  MAX_FILES,
  parseAddressList,
  readUploadForm,
  recheckUploadQuota,
  uploadAllowance,
  uploadsOf,
  type Upload,
} from '../new-request.js';
import { startSession, tooMany } from './auth.js';

/**
 * "Submit a request" (Zendesk's 「リクエストを送信」). Signed in, the form
 * becomes a ticket at once, exactly as a first email would. Signed out (only
 * with REGISTRATION=open) the visitor gives a name and an address, and the
 * whole submission, files included, waits server-side until the link mailed
 * to that address is used: the form cannot mail strangers anything they did
 * not ask for (the confirmation mail holds no text the visitor typed) nor
 * file tickets in someone else's name.
 */
export const MAX_SUBJECT_CHARS = 250;

/** Paths under /requests that a signed-out visitor may open (app.ts exempts them from requireUser). */
export const OPEN_REQUEST_PATHS = new Set(['/requests/new', '/requests/new/confirm']);

interface Draft {
  name: string;
  email: string;
  subject: string;
  description: string;
  ccs: string;
}

function draftOf(body: Record<string, string>): Draft {
  return {
    name: field(body, 'name'),
    email: normalizeEmail(field(body, 'email')),
    subject: field(body, 'subject'),
    description: field(body, 'description'),
    ccs: field(body, 'ccs'),
  };
}

function formPage(c: PortalContext, deps: PortalDeps, draft: Partial<Draft>, errors: string[] = [], status: 200 | 422 = 200) {
  const cfg = deps.ctx.config;
  return renderPage(
    c,
    deps,
    'request-new',
    { ...draft, errors, signedOut: !c.get('user'), maxFiles: MAX_FILES, maxCcs: cfg.MAX_CCS, fileSize: cfg.ATTACHMENT_MAX_BYTES },
    status,
  );
}

function signInFirst(c: PortalContext, deps: PortalDeps): Response {
  return redirectTo(c, deps, `/login?notice=expired&next=${encodeURIComponent('/requests/new')}`);
}

export function registerRequestNewRoutes(app: Hono<PortalEnv>, deps: PortalDeps): void {
  const { ctx } = deps;
  const cfg = ctx.config;

  app.get('/requests/new', (c) => {
    if (!c.get('user') && cfg.REGISTRATION === 'closed') return signInFirst(c, deps);
    return formPage(c, deps, {});
  });

  // The request size is capped in app.ts (the upload limit) before anything parses the body.
  app.post('/requests/new', async (c) => {
    const user = c.get('user');
    if (!user && cfg.REGISTRATION === 'closed') return signInFirst(c, deps);
    // A client already over its limit is turned away before its uploads are parsed.
    if (!user && (await deps.limiters.blocked('password', { ip: clientIp(c, deps) }))) return tooMany(c, deps);
    // Streamed (streamed-form.ts): files cut off at ATTACHMENT_MAX_BYTES and, signed in, at the upload quota.
    const allowance = user ? await uploadAllowance(ctx.db, cfg, user) : null;
    const form = await readUploadForm(c, deps, allowance);
    const draft = draftOf(form.fields);
    const ccs = parseAddressList(draft.ccs);
    const errors: string[] = [];
    if (!user) {
      if (!draft.name || draft.name.length > 200 || /\p{Cc}/u.test(draft.name)) errors.push('signup.name_required');
      // Our own address as the requester would mail the confirmation into our own inbox.
      if (!isValidEmail(draft.email) || isOurAddress(cfg, draft.email)) errors.push('form.invalid_email');
    }
    if (!draft.subject || draft.subject.length > MAX_SUBJECT_CHARS || /\p{Cc}/u.test(draft.subject))
      errors.push('request_new.subject_required');
    if (!draft.description) errors.push('request_new.description_required');
    else if (form.truncated.has('description') || draft.description.length > MAX_COMMENT_CHARS) errors.push('request.comment_too_long');
    if (ccs.length > cfg.MAX_CCS) errors.push('request.too_many_ccs');
    if (form.tooManyFiles) errors.push('request.too_many_files');
    // Signed out, only the rules that need no account lookup: the form must not tell strangers
    // which addresses are staff accounts. Those CCs are dropped at confirmation instead.
    const refusals = await Promise.all(ccs.map((e) => (user ? ccRefusal(ctx, e) : Promise.resolve(ccAddressRefusal(cfg, e)))));
    if (refusals.some(Boolean)) errors.push('request_new.cc_not_allowed');
    if (errors.length) return formPage(c, deps, draft, [...new Set(errors)], 422);
    const uploads = uploadsOf(form);

    if (user) {
      const created = await ctx.db.transaction().execute(async (trx) => {
        await recheckUploadQuota(trx, cfg, user.id, allowance, uploads);
        return createRequestTicket(trx, cfg, {
          requesterId: user.id,
          subject: draft.subject,
          body: draft.description,
          uploads,
          ccEmails: ccs,
        });
      });
      await enqueueAfterCommit(ctx, created.outboxIds);
      return redirectTo(c, deps, `/requests/${created.ticketId}?notice=created`);
    }

    // Per address and per IP, shared with the other forms that mail a link to a typed address.
    if (!(await deps.limiters.attempt('password', { ip: clientIp(c, deps), account: draft.email }))) return tooMany(c, deps);
    await storePending(deps, c.get('locale'), draft, ccs, uploads);
    return renderPage(c, deps, 'check-email', { email: draft.email, bodyKey: 'check_email.request_body', againHref: '/requests/new' });
  });

  app.get('/requests/new/confirm', async (c) => {
    const token = c.req.query('token') ?? '';
    if (!(await liveToken(deps, token))) return renderPage(c, deps, 'request-confirm-invalid', {}, 410);
    return renderPage(c, deps, 'request-confirm', { token });
  });

  app.post('/requests/new/confirm', async (c) => {
    const body = await c.req.parseBody();
    const token = field(body, 'token');
    const ip = clientIp(c, deps);
    // As for set-password links: only failed token checks count, and once limited every answer is 429.
    if (await deps.limiters.blocked('password', { ip })) return tooMany(c, deps);
    if (!(await liveToken(deps, token))) {
      await deps.limiters.attempt('password', { ip });
      return renderPage(c, deps, 'request-confirm-invalid', {}, 410);
    }
    const done = await ctx.db.transaction().execute(async (trx) => {
      const pending = await takeSubmission(trx, sha256(token));
      if (!pending) return null; // used up by a concurrent request
      const existing = await findUserByEmail(trx, pending.email);
      // Registration closed since the form was sent: no account is created now either.
      if (!existing && cfg.REGISTRATION === 'closed') return 'closed' as const;
      // An existing account keeps its name: a stranger must not relabel it (as in /signup).
      const { user } = await ensureUser(trx, { email: pending.email, name: pending.name, locale: pending.locale });
      // The link reached the address: it is verified, as by a set-password link.
      await markUserVerified(trx, user.id);
      const ccEmails: string[] = [];
      for (const email of pending.ccs) {
        if (ccAddressRefusal(cfg, email) || ccAccountRefusal(cfg, await findUserByEmail(trx, email))) continue;
        ccEmails.push(email);
      }
      const uploads: Upload[] = pending.files;
      const created = await createRequestTicket(trx, cfg, {
        requesterId: user.id,
        subject: pending.subject,
        body: pending.body,
        uploads,
        ccEmails,
      });
      return { ...created, userId: user.id };
    });
    if (done === null) return renderPage(c, deps, 'request-confirm-invalid', {}, 410);
    if (done === 'closed') return renderPage(c, deps, 'signup-closed', {}, 403);
    await enqueueAfterCommit(ctx, done.outboxIds);
    // Using the link proved the mailbox, as a sign-in link does: the requester lands on their request.
    await startSession(c, deps, done.userId);
    return redirectTo(c, deps, `/requests/${done.ticketId}?notice=created`);
  });
}

async function liveToken(deps: PortalDeps, token: string): Promise<boolean> {
  return isSecretShaped(token) && submissionExists(deps.ctx.db, sha256(token));
}

/** The submission and its confirmation mail, in one transaction. The mail carries only the sealed token. */
async function storePending(deps: PortalDeps, locale: 'en' | 'ja', draft: Draft, ccs: string[], uploads: Upload[]): Promise<void> {
  const { ctx } = deps;
  const token = randomSecret();
  const outboxId = await ctx.db.transaction().execute(async (trx) => {
    const { expiresAt } = await insertSubmission(trx, {
      tokenHash: sha256(token),
      ttlMs: ctx.config.REQUEST_CONFIRM_TTL,
      email: draft.email,
      name: draft.name,
      locale,
      subject: draft.subject,
      body: draft.description,
      ccs,
      files: uploads,
    });
    const row = await insertOutboundMail(trx, ctx.config, {
      kind: 'request_confirmation',
      recipient: draft.email,
      // No user: the address may have no account, and the mail must not greet anyone by a typed name.
      userId: null,
      locale,
      payload: { token: seal(ctx.config.SECRET_KEY, token), expiresAt: expiresAt.toISOString() },
    });
    return row.id;
  });
  await enqueueAfterCommit(ctx, [outboxId]);
}
