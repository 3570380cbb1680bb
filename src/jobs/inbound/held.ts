/**
 * Why a message did not become a visible ticket or reply. Stable strings:
 * operators filter `held list` by them and tests assert on them.
 */
export const HELD_REASONS = {
  parse_failed: 'the message could not be parsed within the limits',
  own_mail: 'mail sent by replyline itself came back (loop header or our Message-ID)',
  bounce: 'a delivery failure report (attached to the outbound mail it concerns)',
  delivery_status: 'a delivery status report that is not a failure (delay, relayed)',
  auto_reply: 'machine-generated mail (auto-reply, list, bulk)',
  invalid_sender: 'no usable From address',
  loop: 'per-sender breaker: too many messages from this sender in a short time',
  sender_quota: 'the sender brought more than SENDER_DAILY_BYTES of mail in 24 hours',
  unknown_sender: 'REGISTRATION=closed and the sender has no account',
  not_participant: 'a reply to a ticket from someone who is neither a participant nor staff',
  auth_failed: 'mail from a staff address that failed sender authentication',
  cc_limit: 'more CC addresses than MAX_CCS',
  sender_unverified: 'mail that would add people (CCs) from a From address that SPF/DKIM/DMARC do not vouch for',
  unknown_cc: 'REGISTRATION=closed and a CC address has no account',
  unbound_evidence: 'a reply matched only by a reply address or Message-ID issued to someone other than the sender',
  ticket_closed: 'a staff reply to a closed ticket',
  collision: 'a staff reply to a customer message another agent answered within COLLISION_WINDOW (the agent can force it with #send)',
  processing_error: 'processing failed repeatedly; see the error text',
} as const;

export type HeldReason = keyof typeof HELD_REASONS;

export function isHeldReason(value: string): value is HeldReason {
  return Object.hasOwn(HELD_REASONS, value);
}

export class Held extends Error {
  constructor(
    readonly reason: HeldReason,
    readonly detail: string | null = null,
    readonly ticketId: number | null = null,
    /** Outbox rows written while holding (the auth_failed notice), enqueued after commit like a processed message's. */
    readonly outboxIds: number[] = [],
  ) {
    super(`held: ${reason}${detail ? ` (${detail})` : ''}`);
    this.name = 'Held';
  }
}
