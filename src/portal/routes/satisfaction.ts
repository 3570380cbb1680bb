import type { Hono } from 'hono';
import type { CsatRating } from '../../db/database.js';
import { commentOnRating, findCsatTicket, rateTicket } from '../../db/queries/tickets-csat.js';
import { findUserById } from '../../db/queries/users.js';
import { AppError } from '../../errors.js';
import { verifyCsatToken, type CsatLink } from '../../mail/tokens.js';
import { COOKIE, field, readCookie, renderPage, type PortalContext, type PortalDeps, type PortalEnv } from '../http.js';

/**
 * The satisfaction survey's links (src/jobs/lifecycle.ts sends them), for
 * requesters who never sign in. No session: the signed token (ticket +
 * requester, src/mail/tokens.ts) is the permission, and it works only while
 * that user is still the ticket's requester and the ticket is not closed.
 *
 *   GET  /satisfaction/<token>/good|bad   records the rating (one click from the mail), shows the comment form
 *   GET  /satisfaction/<token>            the current rating and the form, or the two choices
 *   POST /satisfaction/<token>            saves the optional comment (CSRF like every form)
 *
 * A forged or foreign token is 404 (like every unknown page); a closed ticket is 410.
 */
export const CSAT_COMMENT_MAX = 2000;

interface Resolved {
  link: CsatLink;
  subject: string;
  closed: boolean;
  rating: CsatRating | null;
  comment: string | null;
}

async function resolve(c: PortalContext, deps: PortalDeps): Promise<Resolved> {
  const link = verifyCsatToken(deps.ctx.config.SECRET_KEY, c.req.param('token') ?? '');
  const ticket = link ? await findCsatTicket(deps.ctx.db, link.ticketId) : undefined;
  if (!link || !ticket || ticket.requesterId !== link.userId) throw new AppError('NOT_FOUND', 'satisfaction link invalid');
  // The page speaks the requester's language (the survey mail did), unless the browser chose one with the switcher.
  const user = c.get('user') || readCookie(c, deps, COOKIE.lang) ? null : await findUserById(deps.ctx.db, link.userId);
  if (user) c.set('locale', user.locale);
  // The URL is the credential, but the site-wide `Referrer-Policy: same-origin` already keeps it from leaving;
  // `no-referrer` would make browsers send `Origin: null` with the comment form, which the CSRF check refuses.
  return { link, subject: ticket.subject, closed: ticket.status === 'closed', rating: ticket.rating, comment: ticket.comment };
}

function expired(c: PortalContext, deps: PortalDeps): Response {
  return renderPage(c, deps, 'satisfaction', { expired: true }, 410);
}

/** The page after a rating: what was recorded, and the comment form. */
function ratedPage(c: PortalContext, deps: PortalDeps, r: Resolved, rating: CsatRating, comment: string | null): Response {
  return renderPage(c, deps, 'satisfaction', {
    ticketId: r.link.ticketId,
    subject: r.subject,
    good: rating === 'good',
    token: c.req.param('token'),
    comment: comment ?? '',
    max: CSAT_COMMENT_MAX,
  });
}

export function registerSatisfactionRoutes(app: Hono<PortalEnv>, deps: PortalDeps): void {
  const { ctx } = deps;

  // Without a rating in the path (the language switcher comes back here): the current rating, or the two choices.
  app.get('/satisfaction/:token', async (c) => {
    const r = await resolve(c, deps);
    if (r.closed) return expired(c, deps);
    if (r.rating) return ratedPage(c, deps, r, r.rating, r.comment);
    return renderPage(c, deps, 'satisfaction', {
      choose: true,
      ticketId: r.link.ticketId,
      subject: r.subject,
      token: c.req.param('token'),
    });
  });

  app.get('/satisfaction/:token/:rating{good|bad}', async (c) => {
    const r = await resolve(c, deps);
    if (r.closed) return expired(c, deps);
    const rating = c.req.param('rating') === 'good' ? 'good' : 'bad';
    if (!(await rateTicket(ctx.db, { ticketId: r.link.ticketId, requesterId: r.link.userId, rating }))) return expired(c, deps);
    // The same rating again keeps its comment; a changed one drops it (rateTicket).
    return ratedPage(c, deps, r, rating, rating === r.rating ? r.comment : null);
  });

  app.post('/satisfaction/:token', async (c) => {
    const { link, closed } = await resolve(c, deps);
    if (closed) return expired(c, deps);
    const body = await c.req.parseBody();
    const comment = field(body, 'comment').slice(0, CSAT_COMMENT_MAX);
    if (!(await commentOnRating(ctx.db, { ticketId: link.ticketId, requesterId: link.userId, comment }))) {
      throw new AppError('NOT_FOUND', 'no rating to comment on');
    }
    return renderPage(c, deps, 'satisfaction', { ticketId: link.ticketId, saved: true });
  });
}
