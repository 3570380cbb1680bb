import { sql, type Expression, type SelectQueryBuilder, type SqlBool } from 'kysely';
import type { Database, Db, TicketsTable, TicketStatus } from '../database.js';
import type { Viewer } from './portal-requests.js';

/**
 * "My activity": the viewer's lists (tabs), filtered by status, searched and
 * sorted. Every tab is scoped here, in SQL, to what the viewer may see.
 */
export type RequestTab = 'mine' | 'cc' | 'org' | 'all';
export type StatusFilter = 'any' | 'open' | 'pending' | 'solved' | 'closed';
export type RequestSort = 'updated' | 'created';

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

export const MAX_SEARCH_TERMS = 5;
export const MAX_SEARCH_CHARS = 200;
/**
 * A term this common is not worth narrowing by index: more than this many
 * tickets or messages contain it, so walking the list newest first finds a
 * page of matches sooner than collecting and sorting every match.
 */
export const SEARCH_CANDIDATE_CAP = 2000;

/** Tabs with at most this many requests are searched without the index (see listRequests). */
export const WALK_LIMIT = 1000;

/** How many rows the tab has, counting no further than `cap` (an index-only scan for the customer tabs). */
async function countUpTo(db: Db, q: SelectQueryBuilder<Database & { t: TicketsTable }, 't', object>, cap: number): Promise<number> {
  const row = await db
    .selectFrom(
      q
        .clearSelect()
        .select(sql`1`.as('one'))
        .limit(cap)
        .as('s'),
    )
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** The query as terms: split on any whitespace (ideographic space included), de-duplicated, bounded. */
export function searchTerms(q: string | undefined): string[] {
  const text = (q ?? '').normalize('NFC').slice(0, MAX_SEARCH_CHARS).trim();
  if (!text) return [];
  return [...new Set(text.split(/\s+/u).filter(Boolean))].slice(0, MAX_SEARCH_TERMS);
}

/** '%term%' for ILIKE, with the term's own %, _ and \ taken literally (backslash is LIKE's default escape). */
export function likePattern(term: string): string {
  return `%${term.replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`;
}

/** pg_trgm extracts trigrams only from three characters on; shorter terms cannot use the index. */
export function indexableTerm(terms: string[]): string | null {
  const long = terms.filter((t) => [...t].length >= 3).sort((a, b) => [...b].length - [...a].length);
  return long[0] ?? null;
}

/** The subject or a public message contains the term (internal notes are never searched). */
function matchesTerm(pattern: string): Expression<SqlBool> {
  // A correlated scalar subquery, not EXISTS: PostgreSQL would turn EXISTS into a semi-join and may then collect
  // every match in the installation through the trigram index; this stays a check of the tab's own rows.
  return sql<SqlBool>`(t.subject ILIKE ${pattern} OR (
    SELECT true FROM messages m WHERE m.ticket_id = t.id AND m.visibility = 'public' AND m.body_text ILIKE ${pattern} LIMIT 1) IS NOT NULL)`;
}

/**
 * Ticket ids whose subject or a public message contains the term, through the
 * trigram indexes; null when the term is so common that the cap was reached.
 * Each side is capped on its own, so a common term costs a short scan, not a
 * collection of every match.
 */
export async function searchCandidates(db: Db, term: string): Promise<number[] | null> {
  const pattern = likePattern(term);
  const { rows } = await sql<{ id: number; n: number }>`
    SELECT id, 0 AS n FROM (SELECT id FROM tickets WHERE subject ILIKE ${pattern} LIMIT ${SEARCH_CANDIDATE_CAP + 1}) s
    UNION ALL
    SELECT ticket_id, 1 FROM (
      SELECT ticket_id FROM messages WHERE visibility = 'public' AND body_text ILIKE ${pattern} LIMIT ${SEARCH_CANDIDATE_CAP + 1}
    ) m`.execute(db);
  if (rows.filter((r) => r.n === 0).length > SEARCH_CANDIDATE_CAP || rows.filter((r) => r.n === 1).length > SEARCH_CANDIDATE_CAP) {
    return null;
  }
  return [...new Set(rows.map((r) => r.id))];
}

/** Requests of the members of every shared organization the viewer belongs to. */
function orgScope(viewerId: number): Expression<SqlBool> {
  return sql<SqlBool>`t.requester_id IN (
    SELECT peer.user_id FROM organization_members me
    JOIN organizations o ON o.id = me.organization_id AND o.shared
    JOIN organization_members peer ON peer.organization_id = me.organization_id
    WHERE me.user_id = ${viewerId})`;
}

/**
 * One page of a tab, newest first by last update or by creation; `hasNext`
 * comes from fetching one extra row, so no COUNT over a large table.
 *
 * Search: every term must appear (case-insensitively, as a substring) in the
 * subject or in a public message. When a term has three characters or more
 * and is not very common, the trigram indexes first narrow the candidates
 * (searchCandidates); otherwise the tab's own rows are walked in order and
 * checked one by one, which stops as soon as a page is full.
 */
export async function listRequests(
  db: Db,
  viewer: Viewer,
  opts: { tab: RequestTab; status: StatusFilter; page: number; pageSize: number; q?: string; sort?: RequestSort },
): Promise<RequestPage> {
  // "all" is a staff view; anyone else asking for it sees nothing rather than an error.
  if (opts.tab === 'all' && viewer.role !== 'staff') return { items: [], hasNext: false };
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
  } else if (opts.tab === 'org') {
    q = q.where(orgScope(viewer.id));
  }
  const statuses = STATUS_FILTERS[opts.status];
  if (statuses) q = q.where('t.status', 'in', statuses);

  const terms = searchTerms(opts.q);
  if (terms.length > 0) {
    // A customer's tab of at most WALK_LIMIT requests is checked row by row: that costs the same at any
    // table size, while the index probe grows with every ticket in the installation that contains the term.
    const small = opts.tab !== 'all' && (await countUpTo(db, q, WALK_LIMIT + 1)) <= WALK_LIMIT;
    const indexed = small ? null : indexableTerm(terms);
    const candidates = indexed ? await searchCandidates(db, indexed) : null;
    if (candidates !== null) {
      if (candidates.length === 0) return { items: [], hasNext: false };
      q = q.where(sql<SqlBool>`t.id = ANY(${candidates}::bigint[])`);
    }
    // The candidates match the indexed term exactly (same pattern, same columns): only the others are checked row by row.
    for (const term of terms) if (candidates === null || term !== indexed) q = q.where(matchesTerm(likePattern(term)));
  }

  const column = opts.sort === 'created' ? 't.created_at' : 't.updated_at';
  const rows = await q
    .orderBy(column, 'desc')
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

/** Whether the viewer belongs to at least one shared organization (the "Organization requests" tab). */
export async function inSharedOrganization(db: Db, userId: number): Promise<boolean> {
  const row = await db
    .selectFrom('organization_members as m')
    .innerJoin('organizations as o', 'o.id', 'm.organization_id')
    .select('o.id')
    .where('m.user_id', '=', userId)
    .where('o.shared', '=', true)
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

/** Whether viewer and requester share a shared organization: read-only access to the requester's requests. */
export async function sharesOrganizationWith(db: Db, viewerId: number, requesterId: number): Promise<boolean> {
  const { rows } = await sql<{ one: number }>`
    SELECT 1 AS one FROM organization_members me
    JOIN organizations o ON o.id = me.organization_id AND o.shared
    JOIN organization_members peer ON peer.organization_id = me.organization_id AND peer.user_id = ${requesterId}
    WHERE me.user_id = ${viewerId} LIMIT 1`.execute(db);
  return rows.length > 0;
}
