import { sql } from 'kysely';
import type { Config } from '../../config.js';
import type { Db, UserRow } from '../database.js';
import { isSecretShaped, randomSecret, sha256 } from '../../core/secrets.js';

/**
 * Server-side sessions. The cookie holds a 128-bit random id; the table holds
 * only its SHA-256, the user, the CSRF token and the two clocks (idle and
 * absolute). Times come from PostgreSQL so app servers' clocks never matter.
 */
export interface Session {
  idHash: Buffer;
  userId: number;
  csrfToken: string;
  createdAt: Date;
  expiresAt: Date;
}

type SessionConfig = Pick<Config, 'SESSION_IDLE_MS' | 'SESSION_ABSOLUTE_MS'>;

/** last_seen_at is written at most this often: a page view should not always be a write. */
const TOUCH_EVERY_MS = 60_000;

export async function createSession(db: Db, config: SessionConfig, userId: number): Promise<{ id: string; session: Session }> {
  const id = randomSecret();
  const row = await db
    .insertInto('sessions')
    .values({
      id_hash: sha256(id),
      user_id: userId,
      csrf_token: randomSecret(),
      expires_at: sql`now() + ${config.SESSION_ABSOLUTE_MS} * interval '1 millisecond'` as never,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  // Sessions that ran out are otherwise only removed when presented; sweep this user's now.
  await db
    .deleteFrom('sessions')
    .where('user_id', '=', userId)
    .where('expires_at', '<=', sql<Date>`now()`)
    .execute();
  return { id, session: { idHash: row.id_hash, userId, csrfToken: row.csrf_token, createdAt: row.created_at, expiresAt: row.expires_at } };
}

/** The live session and its user, or null when unknown, idle too long or past its absolute lifetime. */
export async function loadSession(
  db: Db,
  config: SessionConfig,
  id: string | undefined,
): Promise<{ session: Session; user: UserRow } | null> {
  if (!isSecretShaped(id)) return null;
  const idHash = sha256(id);
  const row = await db
    .selectFrom('sessions as s')
    .innerJoin('users as u', 'u.id', 's.user_id')
    .selectAll('u')
    .select([
      's.csrf_token',
      's.created_at as session_created_at',
      's.expires_at as session_expires_at',
      sql<boolean>`s.expires_at > now() AND s.last_seen_at > now() - ${config.SESSION_IDLE_MS} * interval '1 millisecond'`.as('live'),
      sql<boolean>`s.last_seen_at < now() - ${TOUCH_EVERY_MS} * interval '1 millisecond'`.as('stale_touch'),
    ])
    .where('s.id_hash', '=', idHash)
    .executeTakeFirst();
  if (!row) return null;
  if (!row.live) {
    await db.deleteFrom('sessions').where('id_hash', '=', idHash).execute();
    return null;
  }
  if (row.stale_touch) {
    await db
      .updateTable('sessions')
      .set({ last_seen_at: sql`now()` as never })
      .where('id_hash', '=', idHash)
      .execute();
  }
  const { csrf_token, session_created_at, session_expires_at, live: _live, stale_touch: _touch, ...user } = row;
  return {
    session: { idHash, userId: user.id, csrfToken: csrf_token, createdAt: session_created_at, expiresAt: session_expires_at },
    user,
  };
}

export async function destroySession(db: Db, idHash: Buffer): Promise<void> {
  await db.deleteFrom('sessions').where('id_hash', '=', idHash).execute();
}

export async function revokeUserSessions(db: Db, userId: number): Promise<number> {
  const res = await db.deleteFrom('sessions').where('user_id', '=', userId).executeTakeFirst();
  return Number(res.numDeletedRows);
}

/** Every session of the user but one (the browser that changed the password stays signed in). */
export async function revokeOtherSessions(db: Db, userId: number, keep: Buffer): Promise<number> {
  const res = await db.deleteFrom('sessions').where('user_id', '=', userId).where('id_hash', '!=', keep).executeTakeFirst();
  return Number(res.numDeletedRows);
}
