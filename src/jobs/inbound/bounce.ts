import type { Config } from '../../config.js';
import type { Db } from '../../db/database.js';
import { sentUnbouncedByIds, sentUnbouncedByMessageIds } from '../../db/queries/outbound-mails.js';
import { normalizeMessageId } from '../../core/message-id.js';
import { parseBounceAddress, parseOurMessageId } from '../../mail/tokens.js';
import type { AnalyzedMessage } from './analyze.js';
import { isPermanentFailure, type DsnRecipient, type MachineVerdict } from './classify.js';

/**
 * A bounce of our own mail marks the outbound mail it concerns as failed,
 * so nobody waits for an answer that never arrives. Anyone can write a DSN,
 * so it counts only when it proves which mail it is about, in one of two ways:
 *  - it was delivered to that mail's signed return path (VERP,
 *    `bounce+<id>.<sig>@MAIL_DOMAIN`, our envelope MAIL FROM): the signature
 *    names exactly one outbox row, whatever the DSN's text says (a forwarded
 *    mailbox reports another Final-Recipient; some MTAs return no headers);
 *  - otherwise, it carries the signed Message-ID we gave that very mail (in
 *    the returned headers, the DSN's own In-Reply-To/References or its text),
 *    and only for a recipient the DSN reports as failed.
 * Only a mail already `sent` is marked. A queued mail is never touched (a
 * forged bounce used to cancel a victim's queued set-password link by naming
 * the recipient alone).
 */
type BounceConfig = Pick<Config, 'SECRET_KEY' | 'MAIL_DOMAIN'>;

const OUR_ID_IN_TEXT = /<?(rl\.\d{1,15}\.[a-z2-7]{16}\.[a-z2-7]{16}@[a-z0-9.-]+)>?/gi;

/** The outbox rows named by validly signed return paths among the envelope recipients. */
export function returnPathIds(config: BounceConfig, rcptTo: readonly string[]): number[] {
  const ids = rcptTo.map((r) => parseBounceAddress(config.SECRET_KEY, config.MAIL_DOMAIN, r)?.outboundId);
  return [...new Set(ids.filter((id): id is number => id !== undefined))];
}

/**
 * Mail addressed only to our return paths is machine mail by definition (RFC
 * 5321: the return path is for delivery notifications): whatever the
 * classifier made of it, it never becomes a ticket.
 */
export function returnPathVerdict(config: BounceConfig, rcptTo: readonly string[]): MachineVerdict | null {
  if (rcptTo.length === 0 || returnPathIds(config, rcptTo).length === 0) return null;
  if (!rcptTo.every((r) => parseBounceAddress(config.SECRET_KEY, config.MAIL_DOMAIN, r))) return null;
  return { kind: 'auto_reply', rule: 'sent to our return path (bounce address) but not a delivery failure report' };
}

/** The sent rows a bounce proves failed, and the diagnostic to store on them (apply-plans.ts marks them). */
export async function findBounced(
  db: Db,
  config: BounceConfig,
  a: AnalyzedMessage,
  rcptTo: readonly string[],
): Promise<{ outboundIds: number[]; diagnostic: string }> {
  const failed = (a.dsn?.recipients ?? []).filter(isPermanentFailure);
  const diagnostic = (failed[0]?.diagnosticCode || failed[0]?.status || a.subject || 'bounced').slice(0, 1000);
  const verp = returnPathIds(config, rcptTo);
  const outboundIds = verp.length ? await sentUnbouncedByIds(db, verp) : await sentByMessageId(db, config, a, failed);
  return { outboundIds, diagnostic };
}

/** Sent, not yet bounced rows whose signed Message-ID the DSN carries, to a recipient it reports as failed. */
async function sentByMessageId(db: Db, config: BounceConfig, a: AnalyzedMessage, failed: DsnRecipient[]): Promise<number[]> {
  const candidates = [
    ...(a.dsn?.originalMessageIds ?? []),
    ...a.inReplyTo,
    ...a.references,
    ...[...a.text.matchAll(OUR_ID_IN_TEXT)].map((m) => m[1]!),
  ].map(normalizeMessageId);
  const ours = [...new Set(candidates.filter((id) => parseOurMessageId(config.SECRET_KEY, config.MAIL_DOMAIN, id)))];
  if (ours.length === 0) return [];
  let rows = await sentUnbouncedByMessageIds(db, ours);
  // One DSN may list several recipients; a mail to someone who did not fail is untouched.
  const failedAddresses = new Set(failed.flatMap((r) => [r.finalRecipient, r.originalRecipient]).filter((x): x is string => Boolean(x)));
  if (failedAddresses.size) rows = rows.filter((r) => failedAddresses.has(r.recipient.toLowerCase()));
  return rows.map((r) => r.id);
}
