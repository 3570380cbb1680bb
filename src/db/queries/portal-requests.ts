import { sql } from 'kysely';
import type { CsatRating, Db, ParticipantRole, TicketStatus, UserRole } from '../database.js';

/**
 * Read queries behind the portal. Every one takes the viewer and is scoped to
 * tickets the viewer participates in (requester or cc); staff see all.
 * Anything outside that scope is indistinguishable from "does not exist".
 */
export interface Viewer {
  id: number;
  role: UserRole;
}

export type RequestTab = 'mine' | 'cc' | 'all';
export type StatusFilter = 'any' | 'open' | 'pending' | 'solved' | 'closed';

export const STATUS_FILTERS: Record<StatusFilter, TicketStatus[] | null> = {
  any: null,
  open: ['new', 'open', 'hold'],
  pending: ['pending'],
  solved: ['solved'],
  closed: ['closed'],
};

export interface RequestListItem {
  id: number;
  subject: string;
  status: TicketStatus;
  updatedAt: Date;
  createdAt: Date;
}

export interface RequestPage {
  items: RequestListItem[];
  hasNext: boolean;
}

/** Newest activity first; `hasNext` comes from fetching one extra row, so no COUNT over a large table. */
export async function listRequests(
  db: Db,
  viewer: Viewer,
  opts: { tab: RequestTab; status: StatusFilter; page: number; pageSize: number },
): Promise<RequestPage> {
  let q = db.selectFrom('tickets as t').select(['t.id', 't.subject', 't.status', 't.updated_at', 't.created_at']);
  if (opts.tab === 'mine') {
    q = q.where('t.requester_id', '=', viewer.id);
  } else if (opts.tab === 'cc') {
    q = q.where(({ exists, selectFrom }) =>
      exists(
        selectFrom('ticket_participants as p')
          .select(sql`1`.as('one'))
          .whereRef('p.ticket_id', '=', 't.id')
          .where('p.user_id', '=', viewer.id)
          .where('p.role', '=', 'cc'),
      ),
    );
  } else if (viewer.role !== 'staff') {
    // "all" is a staff view; anyone else asking for it sees nothing rather than an error.
    return { items: [], hasNext: false };
  }
  const statuses = STATUS_FILTERS[opts.status];
  if (statuses) q = q.where('t.status', 'in', statuses);
  const rows = await q
    .orderBy('t.updated_at', 'desc')
    .orderBy('t.id', 'desc')
    .limit(opts.pageSize + 1)
    .offset((opts.page - 1) * opts.pageSize)
    .execute();
  return {
    items: rows.slice(0, opts.pageSize).map((r) => ({
      id: r.id,
      subject: r.subject,
      status: r.status,
      updatedAt: r.updated_at,
      createdAt: r.created_at,
    })),
    hasNext: rows.length > opts.pageSize,
  };
}

export interface ViewableTicket {
  id: number;
  subject: string;
  status: TicketStatus;
  requesterId: number;
  createdAt: Date;
  updatedAt: Date;
  /** The viewer's own role on the ticket; null for staff who are not a participant. */
  viewerRole: ParticipantRole | null;
  /** The requester's satisfaction rating (the page shows it to staff and the requester only). */
  csatRating: CsatRating | null;
  csatComment: string | null;
}

/** The ticket if the viewer may see it; undefined otherwise (the caller answers 404 either way). */
export async function findTicketForViewer(db: Db, ticketId: number, viewer: Viewer): Promise<ViewableTicket | undefined> {
  const row = await db
    .selectFrom('tickets as t')
    .leftJoin('ticket_participants as p', (j) => j.onRef('p.ticket_id', '=', 't.id').on('p.user_id', '=', viewer.id))
    .select([
      't.id',
      't.subject',
      't.status',
      't.requester_id',
      't.created_at',
      't.updated_at',
      'p.role',
      't.csat_rating',
      't.csat_comment',
    ])
    .where('t.id', '=', ticketId)
    .executeTakeFirst();
  if (!row || (row.role === null && viewer.role !== 'staff')) return undefined;
  return {
    id: row.id,
    subject: row.subject,
    status: row.status,
    requesterId: row.requester_id,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    viewerRole: row.role,
    csatRating: row.csat_rating,
    csatComment: row.csat_comment,
  };
}

export interface ThreadAttachment {
  id: number;
  messageId: number;
  filename: string;
  contentType: string;
  size: number;
}

export interface ThreadMessage {
  id: number;
  authorId: number;
  authorName: string | null;
  authorEmail: string;
  authorRole: UserRole;
  via: 'email' | 'portal' | 'system';
  bodyText: string;
  bodyHtml: string | null;
  originalText: string | null;
  originalHtml: string | null;
  createdAt: Date;
  attachments: ThreadAttachment[];
}

export interface ThreadParticipant {
  userId: number;
  name: string | null;
  email: string;
  role: ParticipantRole;
  userRole: UserRole;
}

/**
 * The public conversation, oldest first. Internal notes and their attachments
 * are filtered here, in SQL, so no template can leak them by mistake. Call
 * only after findTicketForViewer said yes.
 */
export async function listPublicThread(db: Db, ticketId: number): Promise<ThreadMessage[]> {
  const messages = await db
    .selectFrom('messages as m')
    .innerJoin('users as u', 'u.id', 'm.author_id')
    .select([
      'm.id',
      'm.author_id',
      'u.name',
      'u.email',
      'u.role',
      'm.via',
      'm.body_text',
      'm.body_html',
      'm.original_text',
      'm.original_html',
      'm.created_at',
    ])
    .where('m.ticket_id', '=', ticketId)
    .where('m.visibility', '=', 'public')
    .orderBy('m.created_at')
    .orderBy('m.id')
    .execute();
  if (messages.length === 0) return [];
  const attachments = await db
    .selectFrom('attachments')
    .select(['id', 'message_id', 'filename', 'content_type', 'size'])
    .where(
      'message_id',
      'in',
      messages.map((m) => m.id),
    )
    .orderBy('id')
    .execute();
  const byMessage = new Map<number, ThreadAttachment[]>();
  for (const a of attachments) {
    const list = byMessage.get(a.message_id) ?? [];
    list.push({ id: a.id, messageId: a.message_id, filename: a.filename, contentType: a.content_type, size: a.size });
    byMessage.set(a.message_id, list);
  }
  return messages.map((m) => ({
    id: m.id,
    authorId: m.author_id,
    authorName: m.name,
    authorEmail: m.email,
    authorRole: m.role,
    via: m.via,
    bodyText: m.body_text,
    bodyHtml: m.body_html,
    originalText: m.original_text,
    originalHtml: m.original_html,
    createdAt: m.created_at,
    attachments: byMessage.get(m.id) ?? [],
  }));
}

export async function listParticipants(db: Db, ticketId: number): Promise<ThreadParticipant[]> {
  const rows = await db
    .selectFrom('ticket_participants as p')
    .innerJoin('users as u', 'u.id', 'p.user_id')
    .select(['u.id', 'u.name', 'u.email', 'u.role as user_role', 'p.role'])
    .where('p.ticket_id', '=', ticketId)
    .orderBy(sql`p.role = 'requester'`, 'desc')
    .orderBy('p.created_at')
    .execute();
  return rows.map((r) => ({ userId: r.id, name: r.name, email: r.email, role: r.role, userRole: r.user_role }));
}

export interface AttachmentContent {
  filename: string;
  contentType: string;
  content: Buffer;
}

/** An attachment of a public message of a ticket the viewer may see; undefined otherwise. */
export async function findAttachmentForViewer(
  db: Db,
  ticketId: number,
  attachmentId: number,
  viewer: Viewer,
): Promise<AttachmentContent | undefined> {
  if (!(await findTicketForViewer(db, ticketId, viewer))) return undefined;
  const row = await db
    .selectFrom('attachments as a')
    .innerJoin('messages as m', 'm.id', 'a.message_id')
    .select(['a.filename', 'a.content_type', 'a.content'])
    .where('a.id', '=', attachmentId)
    .where('m.ticket_id', '=', ticketId)
    .where('m.visibility', '=', 'public')
    .executeTakeFirst();
  return row ? { filename: row.filename, contentType: row.content_type, content: row.content } : undefined;
}
