import type { Hono } from 'hono';
import {
  findAttachmentForViewer,
  findTicketForViewer,
  listParticipants,
  listPublicThread,
  type ViewableTicket,
  type Viewer,
} from '../../db/queries/portal-requests.js';
import {
  inSharedOrganization,
  listRequests,
  MAX_SEARCH_CHARS,
  STATUS_FILTERS,
  type RequestSort,
  type RequestTab,
  type StatusFilter,
} from '../../db/queries/request-lists.js';
import { AppError } from '../../errors.js';
import { renderPage, type PortalContext, type PortalDeps, type PortalEnv } from '../http.js';
import { attachmentDownload } from '../download.js';
import { sanitizeMailHtml } from '../sanitize.js';
import { formatBytes } from '../views.js';

export const PAGE_SIZE = 25;
const MAX_PAGE = 10_000;
const NOTICES = new Set(['commented', 'cc_added', 'cc_removed', 'solved', 'created']);
export { SAFE_CONTENT_TYPE } from '../../mail/content-type.js';

export function viewerOf(c: PortalContext): Viewer {
  const user = c.get('user');
  if (!user) throw new AppError('FORBIDDEN', 'not signed in');
  return { id: user.id, role: user.role };
}

/** Route ids are digits only; anything else is simply "not found". */
export function parseId(value: string | undefined): number {
  if (!value || !/^\d{1,15}$/.test(value)) throw new AppError('NOT_FOUND');
  return Number(value);
}

export async function ticketOr404(deps: PortalDeps, id: number, viewer: Viewer): Promise<ViewableTicket> {
  const ticket = await findTicketForViewer(deps.ctx.db, id, viewer);
  if (!ticket) throw new AppError('NOT_FOUND', `request ${id} not visible`);
  return ticket;
}

/** For the write routes: a request seen only through a shared organization can be read, not changed. */
export async function participantTicketOr404(deps: PortalDeps, id: number, viewer: Viewer): Promise<ViewableTicket> {
  const ticket = await ticketOr404(deps, id, viewer);
  if (ticket.readOnly) throw new AppError('FORBIDDEN', `request ${id} is read-only for user ${viewer.id}`);
  return ticket;
}

/** Plain text differs from the shown body only by whitespace? Then there is nothing to expand. */
function differs(a: string | null, b: string | null): boolean {
  if (!a) return false;
  const norm = (s: string | null) => (s ?? '').replace(/\s+/g, ' ').trim();
  return norm(a) !== norm(b);
}

/** Renders the thread page; also used by the write routes to show their form errors. */
export async function renderThread(
  c: PortalContext,
  deps: PortalDeps,
  ticket: ViewableTicket,
  extra: Record<string, unknown> = {},
  status: 200 | 409 | 413 | 422 = 200,
): Promise<Response> {
  const viewer = viewerOf(c);
  const [messages, participants] = await Promise.all([listPublicThread(deps.ctx.db, ticket.id), listParticipants(deps.ctx.db, ticket.id)]);
  const t = (key: string) => deps.views.t(c.get('locale'), key);
  const display = (p: { name: string | null; email: string; isStaff: boolean }) =>
    // Staff addresses stay private: customers see a name or "Support".
    p.isStaff ? (p.name ?? deps.ctx.config.BRAND_NAME ?? t('request.support')) : p.name ? `${p.name} <${p.email}>` : p.email;
  const notice = c.req.query('notice');
  // Closed requests, and requests seen only through a shared organization, show no forms.
  const writable = ticket.status !== 'closed' && !ticket.readOnly;
  return renderPage(
    c,
    deps,
    'request',
    {
      ticket,
      pageTitle: `#${ticket.id} ${ticket.subject}`.trim(),
      statusKey: `status.${ticket.status}`,
      requester: participants.filter((p) => p.role === 'requester').map((p) => display({ ...p, isStaff: p.userRole === 'staff' }))[0] ?? '',
      // A CC is shown as the address someone typed, never the account's name: the list must not
      // tell the adder whether (or as whom) that address already has an account.
      ccs: participants
        .filter((p) => p.role === 'cc')
        .map((p) => ({ userId: p.userId, label: p.userRole === 'staff' ? display({ ...p, isStaff: true }) : p.email })),
      messages: messages.map((m) => {
        // An agent's mail as their client sent it quotes our notification (commands, requester, internal
        // context): customers get only the cleaned reply, as plain text, and never the original.
        const cleanedOnly = m.authorRole === 'staff' && viewer.role !== 'staff';
        const html = m.bodyHtml && !cleanedOnly ? sanitizeMailHtml(m.bodyHtml) : null;
        const originalHtml = m.originalHtml && !cleanedOnly ? sanitizeMailHtml(m.originalHtml) : null;
        const hasOriginal = cleanedOnly ? false : originalHtml ? differs(originalHtml, html) : differs(m.originalText, m.bodyText);
        return {
          id: m.id,
          author: display({ name: m.authorName, email: m.authorEmail, isStaff: m.authorRole === 'staff' }),
          isStaff: m.authorRole === 'staff',
          viaKey: `request.via_${m.via}`,
          createdAt: m.createdAt,
          html,
          text: m.bodyText,
          hasOriginal,
          originalHtml: hasOriginal ? originalHtml : null,
          originalText: hasOriginal && !originalHtml ? m.originalText : null,
          attachments: m.attachments,
        };
      }),
      writable,
      readOnly: ticket.readOnly,
      canSolve: writable && ticket.status !== 'solved' && (ticket.viewerRole !== null || viewer.role === 'staff'),
      isSolved: ticket.status === 'solved',
      // The requester's own rating, for them and for staff; CCs do not see it.
      csat:
        ticket.csatRating && (viewer.role === 'staff' || ticket.requesterId === viewer.id)
          ? { key: `request.csat_${ticket.csatRating}`, rating: ticket.csatRating, comment: ticket.csatComment }
          : null,
      maxAttachment: formatBytes(deps.ctx.config.ATTACHMENT_MAX_BYTES),
      noticeKey: notice && NOTICES.has(notice) ? `request.notice_${notice}` : null,
      ...extra,
    },
    status,
  );
}

export function registerRequestRoutes(app: Hono<PortalEnv>, deps: PortalDeps): void {
  const { ctx } = deps;

  app.get('/requests', async (c) => {
    const viewer = viewerOf(c);
    const filter = c.req.query('filter');
    const orgTab = await inSharedOrganization(ctx.db, viewer.id);
    const tab: RequestTab =
      filter === 'cc' ? 'cc' : filter === 'all' && viewer.role === 'staff' ? 'all' : filter === 'org' && orgTab ? 'org' : 'mine';
    const statusParam = c.req.query('status') ?? 'any';
    const status: StatusFilter = statusParam in STATUS_FILTERS ? (statusParam as StatusFilter) : 'any';
    const sort: RequestSort = c.req.query('sort') === 'created' ? 'created' : 'updated';
    const q = (c.req.query('q') ?? '').slice(0, MAX_SEARCH_CHARS).trim();
    const pageParam = Number(c.req.query('page') ?? '1');
    const page = Number.isInteger(pageParam) && pageParam >= 1 ? Math.min(pageParam, MAX_PAGE) : 1;
    const result = await listRequests(ctx.db, viewer, { tab, status, page, pageSize: PAGE_SIZE, q, sort });
    const query = (p: number) => {
      const params = new URLSearchParams();
      if (tab !== 'mine') params.set('filter', tab);
      if (status !== 'any') params.set('status', status);
      if (q) params.set('q', q);
      if (sort !== 'updated') params.set('sort', sort);
      if (p > 1) params.set('page', String(p));
      const s = params.toString();
      return s ? `?${s}` : '';
    };
    const names: RequestTab[] = [
      'mine',
      'cc',
      ...(orgTab ? (['org'] as const) : []),
      ...(viewer.role === 'staff' ? (['all'] as const) : []),
    ];
    const tabs = names.map((name) => ({
      name,
      labelKey: `requests.tab_${name}`,
      href: name === 'mine' ? '' : `?filter=${name}`,
      current: name === tab,
    }));
    return renderPage(c, deps, 'requests', {
      tab,
      tabLabelKey: `requests.tab_${tab}`,
      tabs,
      filterValue: tab === 'mine' ? null : tab,
      status,
      statuses: (Object.keys(STATUS_FILTERS) as StatusFilter[]).map((s) => ({ value: s, labelKey: `filter.${s}`, selected: s === status })),
      q,
      sort,
      sorts: (['updated', 'created'] as const).map((s) => ({ value: s, labelKey: `requests.sort_${s}`, selected: s === sort })),
      captionKey: sort === 'created' ? 'requests.caption_created' : 'requests.caption',
      items: result.items.map((i) => ({ ...i, statusKey: `status.${i.status}` })),
      page,
      prevHref: page > 1 ? query(page - 1) || '?' : null,
      nextHref: result.hasNext ? query(page + 1) : null,
    });
  });

  app.get('/requests/:id', async (c) => {
    const ticket = await ticketOr404(deps, parseId(c.req.param('id')), viewerOf(c));
    return renderThread(c, deps, ticket);
  });

  app.get('/requests/:id/attachments/:attachmentId', async (c) => {
    const ticketId = parseId(c.req.param('id'));
    const attachmentId = parseId(c.req.param('attachmentId'));
    const found = await findAttachmentForViewer(ctx.db, ticketId, attachmentId, viewerOf(c));
    if (!found) throw new AppError('NOT_FOUND', `attachment ${attachmentId} not visible`);
    return attachmentDownload(c, found);
  });
}
