import type { Config } from '../config.js';
import type { OutboundKind, OutboundMailRow } from '../db/database.js';
import type { BreakerCounts } from '../db/queries/outbound-mail-contexts.js';
import { isOurAddress } from '../core/address.js';

/**
 * Loop breakers, checked right before a mail goes out (so every suppressed
 * mail stays visible in the outbox with its reason). Limits count mail
 * actually sent in the window, per recipient:
 *  - our own addresses never get mail (a loop in one step);
 *  - acknowledgements: at most ACK_MAX_PER_SENDER_PER_HOUR per hour;
 *  - ticket mail: at most BREAKER_PER_TICKET per ticket per BREAKER_WINDOW_MS;
 *  - customer-facing ticket mail: at most BREAKER_PER_RECIPIENT across tickets.
 * Staff notifications are exempt from the cross-ticket cap: a busy agent
 * legitimately gets many, and staff mailboxes answering by machine are
 * caught on the inbound side (Auto-Submitted, our loop header).
 * Account mail (password links) is rate-limited by the portal instead.
 */

export type BreakerConfig = Pick<
  Config,
  'SUPPORT_ADDRESSES' | 'MAIL_DOMAIN' | 'ACK_MAX_PER_SENDER_PER_HOUR' | 'BREAKER_PER_TICKET' | 'BREAKER_PER_RECIPIENT' | 'BREAKER_WINDOW_MS'
>;

const TICKET_KINDS: OutboundKind[] = ['acknowledgement', 'staff_notification', 'ticket_update'];
const CUSTOMER_KINDS: OutboundKind[] = ['acknowledgement', 'ticket_update'];

/** The reason this mail must not be sent, or null. Counts must be read with the recipient's lock held (lockRecipientsSql). */
export function breakerReason(
  config: BreakerConfig,
  row: Pick<OutboundMailRow, 'kind' | 'recipient' | 'ticket_id'>,
  n: BreakerCounts,
): string | null {
  if (isOurAddress(config, row.recipient)) return 'own_address: never mail our own addresses';
  if (!TICKET_KINDS.includes(row.kind)) return null;
  const windowSecs = config.BREAKER_WINDOW_MS / 1000;
  if (row.kind === 'acknowledgement' && n.acks >= config.ACK_MAX_PER_SENDER_PER_HOUR) {
    return `ack_limit: ${n.acks} acknowledgements sent to this address in the last hour (max ${config.ACK_MAX_PER_SENDER_PER_HOUR})`;
  }
  if (row.ticket_id !== null && n.perTicket >= config.BREAKER_PER_TICKET) {
    return `loop_breaker_ticket: ${n.perTicket} mails on ticket ${row.ticket_id} in ${windowSecs}s (max ${config.BREAKER_PER_TICKET})`;
  }
  if (CUSTOMER_KINDS.includes(row.kind) && n.customer >= config.BREAKER_PER_RECIPIENT) {
    return `loop_breaker_recipient: ${n.customer} mails to this address in ${windowSecs}s (max ${config.BREAKER_PER_RECIPIENT})`;
  }
  return null;
}
