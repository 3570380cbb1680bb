import { sql } from 'kysely';
import type { Config } from '../../config.js';
import type { Db } from '../../db/database.js';
import { normalizeMessageId } from '../../mail/message-id.js';
import { parseOurMessageId } from '../../mail/tokens.js';
import type { AnalyzedMessage } from './analyze.js';
import { isPermanentFailure } from './classify.js';

/**
 * A bounce of our own mail marks the outbound mail it concerns as failed,
 * so nobody waits for an answer that never arrives. Anyone can write a DSN,
 * so it counts only when it proves which mail it is about: it must carry the
 * signed Message-ID we gave that very mail (in the returned headers, the
 * DSN's own In-Reply-To/References or its text), and only a mail already
 * `sent` to a recipient the DSN reports as failed is marked. A queued mail is
 * never touched (a forged bounce used to cancel a victim's queued
 * set-password link by naming the recipient alone).
 */
type BounceConfig = Pick<Config, 'SECRET_KEY' | 'MAIL_DOMAIN'>;

const OUR_ID_IN_TEXT = /<?(rl\.\d{1,15}\.[a-z2-7]{16}\.[a-z2-7]{16}@[a-z0-9.-]+)>?/gi;

export async function attachBounce(db: Db, config: BounceConfig, inboundId: number, a: AnalyzedMessage): Promise<number[]> {
  const failed = (a.dsn?.recipients ?? []).filter(isPermanentFailure);
  const failedAddresses = new Set(failed.flatMap((r) => [r.finalRecipient, r.originalRecipient]).filter((x): x is string => Boolean(x)));
  const diagnostic = (failed[0]?.diagnosticCode || failed[0]?.status || a.subject || 'bounced').slice(0, 1000);

  const candidates = [
    ...(a.dsn?.originalMessageIds ?? []),
    ...a.inReplyTo,
    ...a.references,
    ...[...a.text.matchAll(OUR_ID_IN_TEXT)].map((m) => m[1]!),
  ].map(normalizeMessageId);
  const ours = [...new Set(candidates.filter((id) => parseOurMessageId(config.SECRET_KEY, config.MAIL_DOMAIN, id)))];
  if (ours.length === 0) return [];

  let rows = await db
    .selectFrom('outbound_mails')
    .select(['id', 'recipient'])
    .where('message_id', 'in', ours)
    .where('status', '=', 'sent')
    .where('bounced_at', 'is', null)
    .execute();
  // One DSN may list several recipients; a mail to someone who did not fail is untouched.
  if (failedAddresses.size) rows = rows.filter((r) => failedAddresses.has(r.recipient.toLowerCase()));
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.id);
  await db
    .updateTable('outbound_mails')
    .set({ status: 'failed', bounced_at: sql`now()` as never, bounce_inbound_id: inboundId, last_error: diagnostic })
    .where('id', 'in', ids)
    .where('status', '=', 'sent')
    .execute();
  return ids;
}
