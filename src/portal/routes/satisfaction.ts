import type { Hono } from 'hono';
import { commentOnRating, findCsatTicket, rateTicket } from '../../db/queries/tickets-csat.js';
import { findUserById } from '../../db/queries/users.js';
import { AppError } from '../../errors.js';
import { verifyCsatToken, type CsatLink } from '../../mail/tokens.js';
import { field, renderPage, type PortalContext, type PortalDeps, type PortalEnv } from '../http.js';

/**
 * The satisfaction survey's links (src/jobs/lifecycle.ts sends them), for
 * requesters who never sign in. No session: the signed token (ticket +
 * requester, src/mail/tokens.ts) is the permission, and it works only while
 * that user is still the ticket's requester and the ticket is not closed.
 *
 *   GET  /satisfaction/<token>/good|bad   records the rating (one click from the mail), shows the comment form
 *   POST /satisfaction/<token>            saves the optional comment (CSRF like every form)
 *
 * A forged or foreign token is 404 (like every unknown page); a closed ticket is 410.
 */
export const CSAT_COMMENT_MAX = 2000;

async function resolve(c: PortalContext, deps: PortalDeps): Promise<{ link: CsatLink; subject: string; closed: boolean }> {
  const link = verifyCsatToken(deps.ctx.config.SECRET_KEY, c.req.param('token') ?? '');
  const ticket = link ? await findCsatTicket(deps.ctx.db, link.ticketId) : undefined;
  if (!link || !ticket || ticket.requesterId !== link.userId) throw new AppError('NOT_FOUND', 'satisfaction link invalid');
  // The page speaks the requester's language (the survey mail did), whoever's browser opens it.
  const user = c.get('user') ? null : await findUserById(deps.ctx.db, link.userId);
  if (user) c.set('locale', user.locale);
  // The URL is the credential: it must not leave in a Referer.
  c.header('Referrer-Policy', 'no-referrer');
  return { link, subject: ticket.subject, closed: ticket.status === 'closed' };
}

function expired(c: PortalContext, deps: PortalDeps): Response {
  return renderPage(c, deps, 'satisfaction', { expired: true }, 410);
}

export function registerSatisfactionRoutes(app: Hono<PortalEnv>, deps: PortalDeps): void {
  const { ctx } = deps;

  app.get('/satisfaction/:token/:rating{good|bad}', async (c) => {
    const { link, subject, closed } = await resolve(c, deps);
    if (closed) return expired(c, deps);
    const rating = c.req.param('rating') === 'good' ? 'good' : 'bad';
    if (!(await rateTicket(ctx.db, { ticketId: link.ticketId, requesterId: link.userId, rating }))) return expired(c, deps);
    const current = await findCsatTicket(ctx.db, link.ticketId);
    return renderPage(c, deps, 'satisfaction', {
      ticketId: link.ticketId,
      subject,
      good: rating === 'good',
      token: c.req.param('token'),
      comment: current?.comment ?? '',
      max: CSAT_COMMENT_MAX,
    });
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
