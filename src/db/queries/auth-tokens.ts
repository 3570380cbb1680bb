import { sql } from 'kysely';
import type { Db } from '../database.js';
import { isSecretShaped, randomSecret, sha256 } from '../../core/secrets.js';

/**
 * Mailed one-time tokens: 128-bit random, only the SHA-256 stored, single
 * use. Set-password links last 24 h for a first password and 1 h for a
 * reset; sign-in links 15 minutes. Issuing a token invalidates every older
 * unused one of the same kind (password or sign-in) of that user, and each
 * route accepts only its own kinds: a sign-in link never sets a password.
 */
export type TokenPurpose = 'password_setup' | 'password_reset' | 'sign_in';

export const PASSWORD_PURPOSES: TokenPurpose[] = ['password_setup', 'password_reset'];
export const SIGN_IN_PURPOSES: TokenPurpose[] = ['sign_in'];

export const TOKEN_TTL_MS: Record<TokenPurpose, number> = {
  password_setup: 24 * 60 * 60_000,
  password_reset: 60 * 60_000,
  sign_in: 15 * 60_000,
};

export interface AuthToken {
  id: number;
  userId: number;
  purpose: TokenPurpose;
  expiresAt: Date;
  /** Where the user was going when they asked for the link (a local path), or null. */
  returnTo: string | null;
}

const familyOf = (purpose: TokenPurpose) => (purpose === 'sign_in' ? SIGN_IN_PURPOSES : PASSWORD_PURPOSES);

export async function issueAuthToken(
  db: Db,
  userId: number,
  purpose: TokenPurpose,
  opts: { returnTo?: string | null } = {},
): Promise<{ token: string; expiresAt: Date }> {
  await db
    .deleteFrom('auth_tokens')
    .where('user_id', '=', userId)
    .where('used_at', 'is', null)
    .where('purpose', 'in', familyOf(purpose))
    .execute();
  const token = randomSecret();
  const row = await db
    .insertInto('auth_tokens')
    .values({
      user_id: userId,
      token_hash: sha256(token),
      purpose,
      return_to: opts.returnTo ?? null,
      expires_at: sql`now() + ${TOKEN_TTL_MS[purpose]} * interval '1 millisecond'` as never,
    })
    .returning('expires_at')
    .executeTakeFirstOrThrow();
  return { token, expiresAt: row.expires_at };
}

type TokenRow = { id: number; user_id: number; purpose: TokenPurpose; expires_at: Date; return_to: string | null };
const toToken = (row: TokenRow | undefined): AuthToken | null =>
  row ? { id: row.id, userId: row.user_id, purpose: row.purpose, expiresAt: row.expires_at, returnTo: row.return_to } : null;

/** The token if it is still usable and of one of `purposes`, without using it up (the form page and policy checks need the user). */
export async function peekAuthToken(
  db: Db,
  token: string | undefined,
  purposes: TokenPurpose[] = PASSWORD_PURPOSES,
): Promise<AuthToken | null> {
  if (!isSecretShaped(token)) return null;
  const row = await db
    .selectFrom('auth_tokens')
    .select(['id', 'user_id', 'purpose', 'expires_at', 'return_to'])
    .where('token_hash', '=', sha256(token))
    .where('purpose', 'in', purposes)
    .where('used_at', 'is', null)
    .where('expires_at', '>', sql<Date>`now()`)
    .executeTakeFirst();
  return toToken(row);
}

/** Atomically marks the token used; of two concurrent uses exactly one gets it. */
export async function consumeAuthToken(
  db: Db,
  token: string | undefined,
  purposes: TokenPurpose[] = PASSWORD_PURPOSES,
): Promise<AuthToken | null> {
  if (!isSecretShaped(token)) return null;
  const row = await db
    .updateTable('auth_tokens')
    .set({ used_at: sql`now()` as never })
    .where('token_hash', '=', sha256(token))
    .where('purpose', 'in', purposes)
    .where('used_at', 'is', null)
    .where('expires_at', '>', sql<Date>`now()`)
    .returning(['id', 'user_id', 'purpose', 'expires_at', 'return_to'])
    .executeTakeFirst();
  return toToken(row);
}

export async function invalidateUserTokens(db: Db, userId: number): Promise<void> {
  await db.deleteFrom('auth_tokens').where('user_id', '=', userId).where('used_at', 'is', null).execute();
}
