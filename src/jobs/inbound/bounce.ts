import { sql } from 'kysely';
import type { Config } from '../../config.js';
import type { Db } from '../../db/database.js';
import { parseOurMessageId, parseReplyAddress } from '../../mail/tokens.js';
import type { AnalyzedMessage } from './analyze.js';
import { isPermanentFailure } from './classify.js';

/**
 * A bounce of our own mail marks the outbound mail it concerns as failed,
 * so nobody waits for an answer that never arrives. The outbound mail is
 * found by our Message-ID in the returned headers (or the DSN's own
 * In-Reply-To/References), else by the failed recipient — narrowed to the
 * ticket when the bounce came back to one of our signed reply addresses.
 */
type BounceConfig = Pick<Config, 'SECRET_KEY' | 'MAIL_DOMAIN'>;

const OUR_ID_IN_TEXT = /<?(rl\.\d{1,15}\.[a-z2-7]{16}\.[a-z2-7]{16}@[a-z0-9.-]+)>?/gi;

export async function attachBounce(db: Db, config: BounceConfig, inboundId: number, a: AnalyzedMessage, rcptTo: string[]): Promise<number[]> {
  const failed = (a.dsn?.recipients ?? []).filter(isPermanentFailure);
  const failedAddresses = new Set(failed.flatMap((r) => [r.finalRecipient, r.originalRecipient]).filter((x): x is string => Boolean(x)));
  const diagnostic = (failed[0]?.diagnosticCode || failed[0]?.status || a.subject || 'bounced').slice(0, 1000);

  const candidates = [
    ...(a.dsn?.originalMessageIds ?? []),
    ...a.inReplyTo,
    ...a.references,
    ...[...a.text.matchAll(OUR_ID_IN_TEXT)].map((m) => m[1]!),
  ].map((id) => id.toLowerCase());
  const ours = [...new Set(candidates.filter((id) => parseOurMessageId(config.SECRET_KEY, config.MAIL_DOMAIN, id)))];

  let rows: { id: number; recipient: string }[] = [];
  if (ours.length) {
    rows = await db.selectFrom('outbound_mails').select(['id', 'recipient']).where('message_id', 'in', ours).execute();
    // One DSN may list several recipients; a mail to someone who did not fail is untouched.
    if (failedAddresses.size) rows = rows.filter((r) => failedAddresses.has(r.recipient));
  }
  if (rows.length === 0 && failedAddresses.size) {
    const ticketIds = [...a.to.map((m) => m.address), ...rcptTo]
      .map((addr) => parseReplyAddress(config.SECRET_KEY, config.MAIL_DOMAIN, addr)?.ticketId)
      .filter((x): x is number => x !== undefined);
    for (const recipient of failedAddresses) {
      let q = db
        .selectFrom('outbound_mails')
        .select(['id', 'recipient'])
        .where('recipient', '=', recipient)
        .where('bounced_at', 'is', null)
        .where('status', 'in', ['sent', 'queued']);
      if (ticketIds.length) q = q.where('ticket_id', 'in', ticketIds);
      const row = await q.orderBy('id', 'desc').limit(1).executeTakeFirst();
      if (row) rows.push(row);
    }
  }
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.id);
  await db
    .updateTable('outbound_mails')
    .set({ status: 'failed', bounced_at: sql`now()` as never, bounce_inbound_id: inboundId, last_error: diagnostic })
    .where('id', 'in', ids)
    .execute();
  return ids;
}
