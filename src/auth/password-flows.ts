import type { AppContext } from '../context.js';
import type { Db, UserRow } from '../db/database.js';
import { lockPasswordHash, markUserVerified, setUserPassword } from '../db/queries/users.js';
import { insertOutboundMail, type OutboxInsert } from '../mail/outbox.js';
import { enqueueAfterCommit } from '../jobs/after-commit.js';
import { hashPassword } from './password.js';
import { seal } from '../core/secrets.js';
import { revokeOtherSessions, revokeUserSessions } from '../db/queries/sessions.js';
import { consumeAuthToken, invalidateUserTokens, issueAuthToken, SIGN_IN_PURPOSES, type TokenPurpose } from '../db/queries/auth-tokens.js';

/**
 * The two halves of "get a password": mail a set-password link, and use it.
 * Both write the outbox in the same transaction as the change, then enqueue
 * after commit (best effort; the sweeper picks up anything Redis missed).
 */

/**
 * Issues a fresh token (invalidating older ones of its kind) and queues the
 * set-password mail. `returnTo` (a local path) stays in the token row, not in
 * the mail: after the password is set the user is sent on there.
 */
export async function sendPasswordLink(ctx: AppContext, user: UserRow, returnTo: string | null = null): Promise<void> {
  // A first password may take a day to get round to; a reset is a live attack surface.
  const purpose: TokenPurpose = user.password_hash === null ? 'password_setup' : 'password_reset';
  await mailTokenLink(ctx, user, purpose, returnTo, (token, expiresAt) => ({
    kind: 'password_setup',
    payload: { token, purpose, expiresAt },
  }));
}

/** "Email me a sign-in link": a 15-minute, single-use link that starts a session (see signInWithToken). */
export async function sendSignInLink(ctx: AppContext, user: UserRow, returnTo: string | null = null): Promise<void> {
  await mailTokenLink(ctx, user, 'sign_in', returnTo, (token, expiresAt) => ({ kind: 'sign_in_link', payload: { token, expiresAt } }));
}

async function mailTokenLink(
  ctx: AppContext,
  user: UserRow,
  purpose: TokenPurpose,
  returnTo: string | null,
  mail: (
    sealedToken: string,
    expiresAt: string,
  ) => Pick<OutboxInsert<'password_setup'>, 'kind' | 'payload'> | Pick<OutboxInsert<'sign_in_link'>, 'kind' | 'payload'>,
): Promise<void> {
  const outboxId = await ctx.db.transaction().execute(async (trx) => {
    const { token, expiresAt } = await issueAuthToken(trx, user.id, purpose, { returnTo });
    // Sealed, never raw: README promises only the token's SHA-256 is readable from the database.
    const row = await insertOutboundMail(trx, ctx.config, {
      ...mail(seal(ctx.config.SECRET_KEY, token), expiresAt.toISOString()),
      recipient: user.email,
      userId: user.id,
      locale: user.locale,
    } as OutboxInsert<'password_setup' | 'sign_in_link'>);
    return row.id;
  });
  await enqueueAfterCommit(ctx, [outboxId]);
}

/**
 * Uses a sign-in link: marks the address verified (the link reached it) and
 * returns the user and where they were going; null when the link was used,
 * expired or superseded. The caller starts the session.
 */
export async function signInWithToken(ctx: AppContext, token: string): Promise<{ user: UserRow; returnTo: string | null } | null> {
  return ctx.db.transaction().execute(async (trx) => {
    const used = await consumeAuthToken(trx, token, SIGN_IN_PURPOSES);
    if (!used) return null;
    const user = await markUserVerified(trx, used.userId);
    return { user, returnTo: used.returnTo };
  });
}

/**
 * Uses the token and sets the password: verifies the address, revokes every
 * session and every other outstanding token of the user, and, when this
 * replaces an earlier password, queues the "your password was changed"
 * notice. A first password sends nothing (as in Zendesk): the user has just
 * acted on a link in their own inbox, and "changed" would alarm them.
 * Returns null when the token was already used, expired or superseded
 * (possibly by a concurrent request).
 */
export async function setPasswordWithToken(
  ctx: AppContext,
  token: string,
  password: string,
): Promise<{ user: UserRow; returnTo: string | null } | null> {
  // Hash outside the transaction: argon2 takes tens of milliseconds and row locks should not wait for it.
  const passwordHash = await hashPassword(password);
  const result = await ctx.db.transaction().execute(async (trx) => {
    const used = await consumeAuthToken(trx, token);
    if (!used) return null;
    const previousHash = await lockPasswordHash(trx, used.userId);
    const user = await setUserPassword(trx, used.userId, passwordHash);
    await invalidateUserTokens(trx, user.id);
    await revokeUserSessions(trx, user.id);
    const outboxIds = previousHash === null ? [] : [await queuePasswordChanged(trx, ctx, user)];
    return { user, outboxIds, returnTo: used.returnTo };
  });
  if (!result) return null;
  await enqueueAfterCommit(ctx, result.outboxIds);
  return { user: result.user, returnTo: result.returnTo };
}

/**
 * /profile's change of password (the caller has checked the current one and
 * the policy): every other session of the user ends, so does every
 * outstanding set-password link, and the "changed" notice is queued unless
 * this is the account's first password.
 */
export async function changePassword(
  ctx: AppContext,
  userId: number,
  keepSession: Buffer,
  password: string,
  opts: { notify: boolean },
): Promise<void> {
  const passwordHash = await hashPassword(password);
  const outboxIds = await ctx.db.transaction().execute(async (trx) => {
    const user = await setUserPassword(trx, userId, passwordHash);
    await invalidateUserTokens(trx, user.id);
    await revokeOtherSessions(trx, user.id, keepSession);
    return opts.notify ? [await queuePasswordChanged(trx, ctx, user)] : [];
  });
  await enqueueAfterCommit(ctx, outboxIds);
}

async function queuePasswordChanged(trx: Db, ctx: AppContext, user: UserRow): Promise<number> {
  const notice = await insertOutboundMail(trx, ctx.config, {
    kind: 'password_changed',
    recipient: user.email,
    userId: user.id,
    locale: user.locale,
    payload: {},
  });
  return notice.id;
}
