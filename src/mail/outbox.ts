import { z } from 'zod';
import type { Config } from '../config.js';
import type { Db, Locale, OutboundKind, OutboundMailRow } from '../db/database.js';
import { insertOutboundMailRow, insertOutboundMailRows, type NewOutboundMail } from '../db/queries/outbound-mails.js';
import { makeMessageId } from './tokens.js';

/**
 * The outbox: every mail replyline sends is first a row in outbound_mails,
 * written in the same transaction as the change that caused it, then sent by
 * the send-mail job. The payload holds only ids and small facts; the sender
 * renders the template at send time from the current database state.
 */

export const PAYLOAD_SCHEMAS = {
  acknowledgement: z.object({}),
  staff_notification: z.object({
    /**
     * staff_reply: the FYI to the other agents notified about the customer message a colleague just answered;
     * collision: to an agent whose reply was held because a colleague answered first (the message is that answer).
     */
    event: z.enum(['ticket_created', 'customer_reply', 'internal_note', 'customer_solved', 'staff_reply', 'collision']),
    /** Who acted, for events without a message of their own (customer_solved). */
    by: z.object({ name: z.string().max(200).nullable(), email: z.string().max(320) }).optional(),
    /** collision: the held inbound message (`held show <id>`). */
    inboundId: z.number().int().positive().optional(),
  }),
  ticket_update: z.object({}),
  password_setup: z.object({
    /**
     * The set-password token, sealed with SECRET_KEY (core/secrets.ts), never
     * raw; dropped from the row once the mail is sent. The link is built when
     * the mail is composed.
     */
    token: z.string().optional(),
    /** Rows queued before tokens were sealed carried the whole link. */
    url: z.url().optional(),
    purpose: z.enum(['password_setup', 'password_reset']),
    expiresAt: z.iso.datetime(),
  }),
  password_changed: z.object({}),
  /** A one-time sign-in link: the token sealed like password_setup's, dropped once sent. */
  sign_in_link: z.object({ token: z.string().optional(), expiresAt: z.iso.datetime() }),
  /**
   * "Confirm your request" to the address a signed-out visitor typed: only the sealed token and its
   * expiry. Nothing the visitor wrote (subject, name, text) is ever put in this mail.
   */
  request_confirmation: z.object({ token: z.string().optional(), expiresAt: z.iso.datetime() }),
  /** A lifecycle automation's word to the requester (src/jobs/lifecycle.ts). */
  /** csat: the satisfaction survey to a solved ticket's requester; its links are signed when the mail is composed. */
  ticket_lifecycle: z.object({ event: z.enum(['pending_reminder', 'auto_solved', 'csat']) }),
  /**
   * A staff member's daily list, as of the digest run (src/jobs/staff-digest.ts): a snapshot, so the
   * mail says what was waiting at that hour even if it is sent later. `date` (in STAFF_DIGEST_TIME_ZONE)
   * is unique per recipient (migration 0010).
   */
  staff_digest: z.object({
    date: z.iso.date(),
    tickets: z
      .array(
        z.object({
          id: z.number().int().positive(),
          subject: z.string().max(300),
          status: z.enum(['new', 'open', 'pending', 'hold', 'solved', 'closed']),
          priority: z.enum(['low', 'normal', 'high', 'urgent']),
          createdAt: z.iso.datetime(),
          mine: z.boolean(),
          /** The requester's satisfaction rating, if they gave one (a reopened ticket). */
          csat: z.enum(['good', 'bad']).nullable().optional(),
        }),
      )
      .max(100),
    more: z.number().int().min(0),
    /** Satisfaction ratings given in the 24 hours before the digest run. */
    csat: z.object({ good: z.number().int().min(0), bad: z.number().int().min(0) }).optional(),
  }),
  /** Why a staff member's mail was held as auth_failed: fixed verdict strings only, never ticket content. */
  staff_auth_notice: z.object({ mode: z.enum(['dmarc', 'token']), reason: z.string().max(200), inboundId: z.number().int().positive() }),
} satisfies Record<OutboundKind, z.ZodType>;

export type OutboxPayload<K extends OutboundKind> = z.input<(typeof PAYLOAD_SCHEMAS)[K]>;

export interface OutboxInsert<K extends OutboundKind> {
  kind: K;
  recipient: string;
  userId: number | null;
  locale: Locale;
  ticketId?: number | null;
  ticketMessageId?: number | null;
  payload: OutboxPayload<K>;
}

function outboxValues<K extends OutboundKind>(config: Pick<Config, 'SECRET_KEY' | 'MAIL_DOMAIN'>, mail: OutboxInsert<K>): NewOutboundMail {
  const payload = PAYLOAD_SCHEMAS[mail.kind].parse(mail.payload);
  return {
    kind: mail.kind,
    recipient: mail.recipient,
    user_id: mail.userId,
    locale: mail.locale,
    ticket_id: mail.ticketId ?? null,
    ticket_message_id: mail.ticketMessageId ?? null,
    payload: JSON.stringify(payload),
    message_id: makeMessageId(config.SECRET_KEY, config.MAIL_DOMAIN, mail.ticketId ?? null),
  };
}

export async function insertOutboundMail<K extends OutboundKind>(
  db: Db,
  config: Pick<Config, 'SECRET_KEY' | 'MAIL_DOMAIN'>,
  mail: OutboxInsert<K>,
): Promise<OutboundMailRow> {
  return insertOutboundMailRow(db, outboxValues(config, mail));
}

/**
 * Several outbox rows in one statement; returns their ids (in no particular order).
 * `skipDuplicates`: rows a unique index already has (one digest per staff member and day) are left out.
 */
export async function insertOutboundMails(
  db: Db,
  config: Pick<Config, 'SECRET_KEY' | 'MAIL_DOMAIN'>,
  mails: Array<OutboxInsert<OutboundKind>>,
  opts: { skipDuplicates?: boolean } = {},
): Promise<number[]> {
  if (mails.length === 0) return [];
  return insertOutboundMailRows(
    db,
    mails.map((m) => outboxValues(config, m)),
    opts,
  );
}
