import type { Config } from '../../config.js';
import type { Db } from '../../db/database.js';
import { latestCustomerMessageId, otherStaffReplySince, referencedMessageId } from '../../db/queries/messages.js';
import { findUserRefs } from '../../db/queries/users.js';
import { isOurAddress, isValidEmail } from '../../core/address.js';
import { insertOutboundMails } from '../../mail/outbox.js';
import type { AnalyzedMessage } from './analyze.js';

/**
 * Two agents answering the same customer at once. What an agent answered is
 * what their mail replies to: the In-Reply-To (or References) of a staff
 * reply names the notification they got, and that notification the customer
 * message it was about. If another agent has publicly replied since that
 * message, within COLLISION_WINDOW, the second reply is a collision: it is
 * held and its author told, with the colleague's answer. Comparing with the
 * newest customer message instead would miss exactly this case (nothing new
 * from the customer) and would hold a reply to an FYI, which was written
 * knowing the colleague's answer. A mail that names nothing we know (a client
 * that drops headers) falls back to the newest customer message.
 *
 * Outside the window the colleague's answer (and the FYI about it) is old
 * enough to have been seen, so the reply is taken as meant.
 */

type CollisionConfig = Pick<Config, 'COLLISION_WINDOW' | 'SECRET_KEY' | 'MAIL_DOMAIN' | 'SUPPORT_ADDRESSES'>;

/** The colleague's message this reply collides with, or null. */
export async function findCollision(
  trx: Db,
  windowMs: number,
  ticketId: number,
  authorId: number,
  a: Pick<AnalyzedMessage, 'inReplyTo' | 'references'>,
): Promise<number | null> {
  const refs = [...a.inReplyTo, ...[...a.references].reverse()];
  const answered = (await referencedMessageId(trx, ticketId, refs)) ?? (await latestCustomerMessageId(trx, ticketId));
  if (answered === null) return null;
  return otherStaffReplySince(trx, { ticketId, afterId: answered, authorId, windowMs });
}

/** The held detail of a colliding reply. */
export function collisionDetail(ticketId: number, otherMessageId: number): string {
  return `another agent answered ticket ${ticketId} (message ${otherMessageId}) after the message this reply answers; #send forces it`;
}

/**
 * The notice to the author of a colliding reply (a staff notification
 * quoting the colleague's answer, with `#send`); returns its outbox ids.
 */
export async function noticeCollision(
  trx: Db,
  config: CollisionConfig,
  q: { inboundId: number; ticketId: number; authorId: number; otherMessageId: number },
): Promise<number[]> {
  const [author] = await findUserRefs(trx, [q.authorId]);
  if (!author || !isValidEmail(author.email) || isOurAddress(config, author.email)) return [];
  return insertOutboundMails(trx, config, [
    {
      kind: 'staff_notification',
      recipient: author.email,
      userId: author.id,
      locale: author.locale,
      ticketId: q.ticketId,
      ticketMessageId: q.otherMessageId,
      payload: { event: 'collision', inboundId: q.inboundId },
    },
  ]);
}
