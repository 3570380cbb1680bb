import { sql } from 'kysely';
import type { CsatRating, Db, ParticipantRole, TicketStatus, UserRole } from '../database.js';
import { sharesOrganizationWith } from './request-lists.js';

/**
 * Read queries behind the portal. Every one takes the viewer and is scoped to
 * tickets the viewer participates in (requester or cc); staff see all; a
 * member of a shared organization also reads (only reads) the requests of the
 * organization's other members. Anything outside that scope is
 * indistinguishable from "does not exist". The lists are in request-lists.ts.
 */
export interface Viewer {
  id: number;
  role: UserRole;
}

export interface ViewableTicket {
  id: number;
  subject: string;
  status: TicketStatus;
  requesterId: number;
  createdAt: Date;
  updatedAt: Date;
  /** The viewer's own role on the ticket; null for staff or organization peers who are not a participant. */
  viewerRole: ParticipantRole | null;
  /** The requester's satisfaction rating (the page shows it to staff and the requester only). */
  csatRating: CsatRating | null;
  csatComment: string | null;
  /** Seen through a shared organization only: shown, but no reply, CC or solve. */
  readOnly: boolean;
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
  if (!row) return undefined;
  const throughOrg = row.role === null && viewer.role !== 'staff';
  if (throughOrg && !(await sharesOrganizationWith(db, viewer.id, row.requester_id))) return undefined;
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
    readOnly: throughOrg,
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
