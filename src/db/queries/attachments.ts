import { sql } from 'kysely';
import type { Db } from '../database.js';
import type { AttachmentContent } from './portal-requests.js';

/**
 * Attachment bytes for outbound mail and for signed file links. Kept apart
 * from the mail-context statement on purpose: bytes are read only when a
 * mail really carries them, and never inside the delivery transaction.
 */

/** The bytes of these attachments (missing ids are simply absent). */
export async function loadAttachmentContents(db: Db, ids: number[]): Promise<Map<number, Buffer>> {
  if (ids.length === 0) return new Map();
  const rows = await db.selectFrom('attachments').select(['id', 'content']).where('id', 'in', ids).execute();
  return new Map(rows.map((r) => [r.id, r.content]));
}

/**
 * The attachment a file link names, if its recipient may still see it:
 * staff see every file of every ticket; anyone else only the files of public
 * messages on tickets they are still a participant of (removing a CC revokes
 * their links).
 */
export async function findAttachmentForLink(db: Db, attachmentId: number, userId: number): Promise<AttachmentContent | undefined> {
  const row = await db
    .selectFrom('attachments as a')
    .innerJoin('messages as m', 'm.id', 'a.message_id')
    .innerJoin('users as u', (j) => j.on('u.id', '=', userId))
    .select(['a.filename', 'a.content_type', 'a.content'])
    .where('a.id', '=', attachmentId)
    .where((eb) =>
      eb.or([
        eb('u.role', '=', 'staff'),
        eb.and([
          eb('m.visibility', '=', 'public'),
          eb.exists(
            eb
              .selectFrom('ticket_participants as p')
              .select(sql`1`.as('one'))
              .whereRef('p.ticket_id', '=', 'm.ticket_id')
              .where('p.user_id', '=', userId),
          ),
        ]),
      ]),
    )
    .executeTakeFirst();
  return row ? { filename: row.filename, contentType: row.content_type, content: row.content } : undefined;
}

/** Bytes of files the user attached to portal comments in the last 24 hours (the UPLOAD_DAILY_BYTES window). */
export async function portalUploadBytesToday(db: Db, userId: number): Promise<number> {
  const row = await db
    .selectFrom('messages as m')
    .innerJoin('attachments as a', 'a.message_id', 'm.id')
    .select(sql<string>`coalesce(sum(a.size), 0)`.as('bytes'))
    .where('m.author_id', '=', userId)
    .where('m.via', '=', 'portal')
    .where('m.created_at', '>', sql<Date>`now() - interval '24 hours'`)
    .executeTakeFirstOrThrow();
  return Number(row.bytes);
}

/** One user's uploads are checked against the quota one at a time, across portal processes (until commit). */
export async function lockUploadQuota(trx: Db, userId: number): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(hashtextextended(${`rl-upload:${userId}`}, 0))`.execute(trx);
}

export interface NewAttachment {
  messageId: number;
  filename: string;
  contentType: string;
  content: Buffer;
  sha256: string;
  contentId?: string | null;
  inline?: boolean;
}

/** An attachment as its row. */
const attachmentRow = (a: NewAttachment) => ({
  message_id: a.messageId,
  filename: a.filename,
  content_type: a.contentType,
  size: a.content.length,
  sha256: a.sha256,
  content_id: a.contentId ?? null,
  inline: a.inline ?? false,
  content: a.content,
});

export async function addAttachment(db: Db, a: NewAttachment): Promise<number> {
  const row = await db.insertInto('attachments').values(attachmentRow(a)).returning('id').executeTakeFirstOrThrow();
  return row.id;
}

/** Several attachments in one statement (the inbound batch's messages). */
export async function addAttachments(db: Db, rows: NewAttachment[]): Promise<void> {
  if (rows.length === 0) return;
  await db.insertInto('attachments').values(rows.map(attachmentRow)).execute();
}
