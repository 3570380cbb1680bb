import { sql } from 'kysely';
import type { Db, Locale } from '../database.js';

/**
 * Signed-out visitors' requests waiting for their confirmation link
 * (migration 0013). Looked up only by the SHA-256 of the mailed token; taken
 * (deleted) exactly once; expired rows are deleted whenever a new one is stored.
 */
export interface PendingFile {
  filename: string;
  contentType: string;
  content: Buffer;
  sha256: string;
}

export interface PendingSubmission {
  id: number;
  email: string;
  name: string;
  locale: Locale;
  subject: string;
  body: string;
  ccs: string[];
  files: PendingFile[];
}

/** Submissions whose confirmation link expired, with their files (ON DELETE CASCADE); returns how many. */
export async function deleteExpiredSubmissions(db: Db, now: Date = new Date()): Promise<number> {
  const r = await db.deleteFrom('portal_submissions').where('expires_at', '<=', now).executeTakeFirst();
  return Number(r.numDeletedRows);
}

export async function insertSubmission(
  db: Db,
  s: Omit<PendingSubmission, 'id'> & { tokenHash: Buffer; ttlMs: number },
): Promise<{ id: number; expiresAt: Date }> {
  await deleteExpiredSubmissions(db);
  const row = await db
    .insertInto('portal_submissions')
    .values({
      token_hash: s.tokenHash,
      email: s.email,
      name: s.name,
      locale: s.locale,
      subject: s.subject,
      body: s.body,
      ccs: s.ccs,
      expires_at: sql`now() + ${s.ttlMs} * interval '1 millisecond'` as never,
    })
    .returning(['id', 'expires_at'])
    .executeTakeFirstOrThrow();
  for (const f of s.files) {
    await db
      .insertInto('portal_submission_files')
      .values({ submission_id: row.id, filename: f.filename, content_type: f.contentType, sha256: f.sha256, content: f.content })
      .execute();
  }
  return { id: row.id, expiresAt: row.expires_at };
}

/** Whether a live submission has this token hash (the confirmation page, before the button). */
export async function submissionExists(db: Db, tokenHash: Buffer): Promise<boolean> {
  const row = await db
    .selectFrom('portal_submissions')
    .select('id')
    .where('token_hash', '=', tokenHash)
    .where('expires_at', '>', sql<Date>`now()`)
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * Takes the live submission (call inside a transaction): locked, its files
 * read, then deleted. Of two concurrent confirmations exactly one gets it;
 * the other waits on the lock and then finds nothing.
 */
export async function takeSubmission(trx: Db, tokenHash: Buffer): Promise<PendingSubmission | null> {
  const row = await trx
    .selectFrom('portal_submissions')
    .select(['id', 'email', 'name', 'locale', 'subject', 'body', 'ccs'])
    .where('token_hash', '=', tokenHash)
    .where('expires_at', '>', sql<Date>`now()`)
    .forUpdate()
    .executeTakeFirst();
  if (!row) return null;
  const files = await trx
    .selectFrom('portal_submission_files')
    .select(['filename', 'content_type', 'sha256', 'content'])
    .where('submission_id', '=', row.id)
    .orderBy('id')
    .execute();
  await trx.deleteFrom('portal_submissions').where('id', '=', row.id).execute();
  return {
    ...row,
    files: files.map((f) => ({ filename: f.filename, contentType: f.content_type, sha256: f.sha256, content: f.content })),
  };
}
