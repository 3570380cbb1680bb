import { sql } from 'kysely';
import type { Db, Locale, UserRole, UserRow } from '../database.js';
import { AppError } from '../../errors.js';
import { normalizeEmail } from '../../core/address.js';

export async function findUserByEmail(db: Db, email: string): Promise<UserRow | undefined> {
  return db
    .selectFrom('users')
    .selectAll()
    .where(sql<string>`lower(email)`, '=', normalizeEmail(email))
    .executeTakeFirst();
}

export async function findUserById(db: Db, id: number): Promise<UserRow | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}

/** findUserById for a user that must exist (throws otherwise). */
export async function getUser(db: Db, id: number): Promise<UserRow> {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
}

/** Several users as mail recipients, by id (missing ids are simply absent). */
export async function findUserRefs(db: Db, ids: number[]): Promise<UserRef[]> {
  if (ids.length === 0) return [];
  return db.selectFrom('users').select(['id', 'email', 'role', 'locale']).where('id', 'in', ids).execute();
}

/** Every staff account, for notifications on tickets without an assignee. */
export function listStaffRefs(db: Db): Promise<UserRef[]> {
  return db.selectFrom('users').select(['id', 'email', 'role', 'locale']).where('role', '=', 'staff').orderBy('id').execute();
}

/** The assignee and the staff who are participants of the ticket or wrote on it. */
export function listFollowingStaff(db: Db, ticketId: number, assigneeId: number): Promise<UserRef[]> {
  return db
    .selectFrom('users')
    .select(['id', 'email', 'role', 'locale'])
    .where('role', '=', 'staff')
    .where((eb) =>
      eb.or([
        eb('id', '=', assigneeId),
        eb('id', 'in', eb.selectFrom('ticket_participants').select('user_id').where('ticket_id', '=', ticketId)),
        eb('id', 'in', eb.selectFrom('messages').select('author_id').where('ticket_id', '=', ticketId)),
      ]),
    )
    .orderBy('id')
    .execute();
}

/** A user's role and language, when only those decide whether and how to mail them. */
export async function findUserRoleAndLocale(db: Db, id: number): Promise<Pick<UserRow, 'role' | 'locale'> | undefined> {
  return db.selectFrom('users').select(['locale', 'role']).where('id', '=', id).executeTakeFirst();
}

export interface NewUser {
  email: string;
  name?: string | null;
  role?: UserRole;
  locale?: Locale;
}

/** Creates a user; DUPLICATE_USER when the address (case-insensitively) exists. */
export async function createUser(db: Db, u: NewUser): Promise<UserRow> {
  const row = await db
    .insertInto('users')
    .values({ email: normalizeEmail(u.email), name: u.name ?? null, role: u.role, locale: u.locale })
    .onConflict((oc) => oc.expression(sql`lower(email)`).doNothing())
    .returningAll()
    .executeTakeFirst();
  if (!row) throw new AppError('DUPLICATE_USER', `a user with address ${normalizeEmail(u.email)} already exists`);
  return row;
}

/**
 * The implicit account: finds the user by address or creates one without a
 * password. Safe under concurrency (two first mails from one sender at once).
 */
export async function ensureUser(db: Db, u: NewUser): Promise<{ user: UserRow; created: boolean }> {
  const inserted = await db
    .insertInto('users')
    .values({ email: normalizeEmail(u.email), name: u.name ?? null, role: u.role, locale: u.locale })
    .onConflict((oc) => oc.expression(sql`lower(email)`).doNothing())
    .returningAll()
    .executeTakeFirst();
  if (inserted) return { user: inserted, created: true };
  const existing = await findUserByEmail(db, u.email);
  if (!existing) throw new Error(`user ${u.email} vanished during ensureUser`);
  return { user: existing, created: false };
}

/** What mail needs of a user: who, where, and in which language. */
export type UserRef = Pick<UserRow, 'id' | 'email' | 'role' | 'locale'>;

/**
 * ensureUser for many addresses in one statement (the inbound batch's new
 * senders). Returns every address's user, keyed by normalised address; an
 * address another transaction created meanwhile is read in a second statement,
 * whose snapshot sees that commit.
 */
export async function ensureUsers(db: Db, users: NewUser[]): Promise<Map<string, UserRef>> {
  const out = new Map<string, UserRef>();
  if (users.length === 0) return out;
  const emails = users.map((u) => normalizeEmail(u.email));
  const { rows } = await sql<UserRef>`
    WITH ins AS (
      INSERT INTO users (email, name, locale)
      SELECT * FROM unnest(${emails}::text[], ${users.map((u) => u.name ?? null)}::text[], ${users.map((u) => u.locale ?? 'en')}::text[])
      ON CONFLICT (lower(email)) DO NOTHING
      RETURNING id, email, role, locale
    )
    SELECT id, email, role, locale FROM ins
    UNION ALL
    SELECT id, email, role, locale FROM users WHERE lower(email) = ANY(${emails}::text[])
  `.execute(db);
  for (const r of rows) out.set(r.email, r);
  const missing = emails.filter((e) => !out.has(e));
  if (missing.length > 0) {
    const late = await db
      .selectFrom('users')
      .select(['id', 'email', 'role', 'locale'])
      .where(sql<string>`lower(email)`, 'in', missing)
      .execute();
    for (const r of late) out.set(r.email, r);
  }
  for (const e of emails) if (!out.has(e)) throw new Error(`user ${e} vanished during ensureUsers`);
  return out;
}

export async function listUsers(db: Db, role?: UserRole): Promise<UserRow[]> {
  let q = db.selectFrom('users').selectAll().orderBy('id');
  if (role) q = q.where('role', '=', role);
  return q.execute();
}

export async function setUserRole(db: Db, id: number, role: UserRole): Promise<void> {
  await db
    .updateTable('users')
    .set({ role, updated_at: sql`now()` })
    .where('id', '=', id)
    .execute();
}

/** A mailed link reached the address: it is verified (the first time only; the moment is kept). */
export async function markUserVerified(db: Db, id: number): Promise<UserRow> {
  return db
    .updateTable('users')
    .set({ verified_at: sql`coalesce(verified_at, now())` as never })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** The current password hash (null: none yet), the row locked for the rest of the transaction. */
export async function lockPasswordHash(db: Db, id: number): Promise<string | null> {
  const row = await db.selectFrom('users').select('password_hash').where('id', '=', id).forUpdate().executeTakeFirstOrThrow();
  return row.password_hash;
}

/** A new password from a link or /profile: it also proves the address, so the user is verified. */
export async function setUserPassword(db: Db, id: number, passwordHash: string): Promise<UserRow> {
  return db
    .updateTable('users')
    .set({
      password_hash: passwordHash,
      verified_at: sql`coalesce(verified_at, now())` as never,
      updated_at: sql`now()` as never,
    })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** The same password under current argon2 parameters (at sign-in): nothing else about the user changes. */
export async function replacePasswordHash(db: Db, id: number, passwordHash: string): Promise<void> {
  await db.updateTable('users').set({ password_hash: passwordHash }).where('id', '=', id).execute();
}

/** Which of these addresses have no account (closed registration holds mail that would create them). */
export async function emailsWithoutAccount(db: Db, emails: string[]): Promise<string[]> {
  if (emails.length === 0) return [];
  const wanted = emails.map(normalizeEmail);
  const rows = await db
    .selectFrom('users')
    .select('email')
    .where(sql<string>`lower(email)`, 'in', wanted)
    .execute();
  const known = new Set(rows.map((r) => r.email.toLowerCase()));
  return wanted.filter((e) => !known.has(e));
}

/** /profile: name (null clears it), language and time zone (null: not chosen, PORTAL_TIME_ZONE applies). */
export async function updateProfile(
  db: Db,
  id: number,
  profile: { name?: string | null; locale?: Locale; timeZone?: string | null },
): Promise<void> {
  await db
    .updateTable('users')
    .set({
      ...(profile.name !== undefined ? { name: profile.name } : {}),
      ...(profile.locale !== undefined ? { locale: profile.locale } : {}),
      ...(profile.timeZone !== undefined ? { time_zone: profile.timeZone } : {}),
      updated_at: sql`now()` as never,
    })
    .where('id', '=', id)
    .execute();
}
