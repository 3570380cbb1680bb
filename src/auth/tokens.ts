import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import { isSecretShaped, randomSecret, sha256 } from './secrets.js';

/**
 * Set-password tokens: 128-bit random, only the SHA-256 stored, single use,
 * 24 h for a first password and 1 h for a reset, and issuing a new one
 * invalidates every older unused one of that user.
 */
export type TokenPurpose = 'password_setup' | 'password_reset';

export const TOKEN_TTL_MS: Record<TokenPurpose, number> = {
  password_setup: 24 * 60 * 60_000,
  password_reset: 60 * 60_000,
};

export interface AuthToken {
  id: number;
  userId: number;
  purpose: TokenPurpose;
  expiresAt: Date;
}

export async function issueAuthToken(db: Db, userId: number, purpose: TokenPurpose): Promise<{ token: string; expiresAt: Date }> {
  await db.deleteFrom('auth_tokens').where('user_id', '=', userId).where('used_at', 'is', null).execute();
  const token = randomSecret();
  const row = await db
    .insertInto('auth_tokens')
    .values({
      user_id: userId,
      token_hash: sha256(token),
      purpose,
      expires_at: sql`now() + ${TOKEN_TTL_MS[purpose]} * interval '1 millisecond'` as never,
    })
    .returning('expires_at')
    .executeTakeFirstOrThrow();
  return { token, expiresAt: row.expires_at };
}

/** The token if it is still usable, without using it up (the form page and policy checks need the user). */
export async function peekAuthToken(db: Db, token: string | undefined): Promise<AuthToken | null> {
  if (!isSecretShaped(token)) return null;
  const row = await db
    .selectFrom('auth_tokens')
    .select(['id', 'user_id', 'purpose', 'expires_at'])
    .where('token_hash', '=', sha256(token))
    .where('used_at', 'is', null)
    .where('expires_at', '>', sql<Date>`now()`)
    .executeTakeFirst();
  return row ? { id: row.id, userId: row.user_id, purpose: row.purpose, expiresAt: row.expires_at } : null;
}

/** Atomically marks the token used; of two concurrent uses exactly one gets it. */
export async function consumeAuthToken(db: Db, token: string | undefined): Promise<AuthToken | null> {
  if (!isSecretShaped(token)) return null;
  const row = await db
    .updateTable('auth_tokens')
    .set({ used_at: sql`now()` as never })
    .where('token_hash', '=', sha256(token))
    .where('used_at', 'is', null)
    .where('expires_at', '>', sql<Date>`now()`)
    .returning(['id', 'user_id', 'purpose', 'expires_at'])
    .executeTakeFirst();
  return row ? { id: row.id, userId: row.user_id, purpose: row.purpose, expiresAt: row.expires_at } : null;
}

export async function invalidateUserTokens(db: Db, userId: number): Promise<void> {
  await db.deleteFrom('auth_tokens').where('user_id', '=', userId).where('used_at', 'is', null).execute();
}
