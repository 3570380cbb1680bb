import { sql } from 'kysely';
import type { CsatRating, Db, LabelledCount } from '../database.js';
import type { DueTicket } from './tickets.js';

/** The satisfaction columns of tickets (migration 0011): who is due a survey, and the rating itself. */

/** Solved tickets whose requester was never surveyed, solved before `before`; locked, skipping rows another run holds. */
export async function lockDueSurveys(db: Db, q: { before: Date; limit: number }): Promise<DueTicket[]> {
  const rows = await db
    .selectFrom('tickets')
    .select(['id', 'requester_id'])
    .where('status', '=', 'solved')
    .where('csat_sent_at', 'is', null)
    .where('status_changed_at', '<=', q.before)
    .orderBy('status_changed_at')
    .limit(q.limit)
    .forUpdate()
    .skipLocked()
    .execute();
  return rows.map((r) => ({ id: r.id, requesterId: r.requester_id }));
}

/** /metrics: the latest rating of each rated ticket, counted by rating (both ratings always present). */
export async function countCsatRatings(db: Db): Promise<LabelledCount[]> {
  const { rows } =
    await sql<LabelledCount>`select r as label, count(t.id) as n from unnest(array['good', 'bad']) r left join tickets t on t.csat_rating = r group by 1`.execute(
      db,
    );
  return rows;
}

export async function markSurveysSent(db: Db, ticketIds: number[], at: Date): Promise<void> {
  if (ticketIds.length === 0) return;
  await db.updateTable('tickets').set({ csat_sent_at: at }).where('id', 'in', ticketIds).execute();
}

export interface CsatTicket {
  id: number;
  subject: string;
  status: string;
  requesterId: number;
  rating: CsatRating | null;
  comment: string | null;
}

export async function findCsatTicket(db: Db, ticketId: number): Promise<CsatTicket | undefined> {
  const row = await db
    .selectFrom('tickets')
    .select(['id', 'subject', 'status', 'requester_id', 'csat_rating', 'csat_comment'])
    .where('id', '=', ticketId)
    .executeTakeFirst();
  return (
    row && {
      id: row.id,
      subject: row.subject,
      status: row.status,
      requesterId: row.requester_id,
      rating: row.csat_rating,
      comment: row.csat_comment,
    }
  );
}

/**
 * Records the requester's rating while the ticket is not closed (checked in the same statement, so a
 * close that commits first wins). A changed rating drops the old comment: it explained the old one.
 * Returns false when the ticket is closed (or gone, or no longer theirs).
 */
export async function rateTicket(db: Db, q: { ticketId: number; requesterId: number; rating: CsatRating }): Promise<boolean> {
  const r = await db
    .updateTable('tickets')
    .set({
      csat_rating: q.rating,
      csat_comment: sql<string | null>`CASE WHEN csat_rating = ${q.rating} THEN csat_comment END`,
      csat_rated_at: sql<Date>`now()`,
    })
    .where('id', '=', q.ticketId)
    .where('requester_id', '=', q.requesterId)
    .where('status', '!=', 'closed')
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** The comment to a rating already given; false when there is none yet or the ticket is closed. */
export async function commentOnRating(db: Db, q: { ticketId: number; requesterId: number; comment: string }): Promise<boolean> {
  const r = await db
    .updateTable('tickets')
    .set({ csat_comment: q.comment === '' ? null : q.comment })
    .where('id', '=', q.ticketId)
    .where('requester_id', '=', q.requesterId)
    .where('status', '!=', 'closed')
    .where('csat_rating', 'is not', null)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** Ratings given since a moment, for the staff digest. */
export async function countRatingsSince(db: Db, since: Date): Promise<{ good: number; bad: number }> {
  const row = await db
    .selectFrom('tickets')
    .select([
      sql<string>`count(*) FILTER (WHERE csat_rating = 'good')`.as('good'),
      sql<string>`count(*) FILTER (WHERE csat_rating = 'bad')`.as('bad'),
    ])
    .where('csat_rating', 'is not', null)
    .where('csat_rated_at', '>=', since)
    .executeTakeFirstOrThrow();
  return { good: Number(row.good), bad: Number(row.bad) };
}
