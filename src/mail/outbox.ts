import { z } from 'zod';
import type { Config } from '../config.js';
import type { Db, Locale, OutboundKind, OutboundMailRow } from '../db/database.js';
import { makeMessageId } from './tokens.js';

/**
 * The outbox: every mail replyline sends is first a row in outbound_mails,
 * written in the same transaction as the change that caused it, then sent by
 * the send-mail job. The payload holds only ids and small facts; the sender
 * renders the template at send time from the current database state.
 */

export const PAYLOAD_SCHEMAS = {
  acknowledgement: z.object({}),
  staff_notification: z.object({ event: z.enum(['ticket_created', 'customer_reply']) }),
  ticket_update: z.object({}),
  password_setup: z.object({
    /**
     * The set-password token, sealed with SECRET_KEY (auth/secrets.ts), never
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

function outboxValues<K extends OutboundKind>(config: Pick<Config, 'SECRET_KEY' | 'MAIL_DOMAIN'>, mail: OutboxInsert<K>) {
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
  return db.insertInto('outbound_mails').values(outboxValues(config, mail)).returningAll().executeTakeFirstOrThrow();
}

/** Several outbox rows in one statement; returns their ids (in no particular order). */
export async function insertOutboundMails(
  db: Db,
  config: Pick<Config, 'SECRET_KEY' | 'MAIL_DOMAIN'>,
  mails: Array<OutboxInsert<OutboundKind>>,
): Promise<number[]> {
  if (mails.length === 0) return [];
  const rows = await db
    .insertInto('outbound_mails')
    .values(mails.map((m) => outboxValues(config, m)))
    .returning('id')
    .execute();
  return rows.map((r) => r.id);
}

export async function findQueuedOutboundIds(db: Db, olderThan: Date, limit: number): Promise<number[]> {
  const rows = await db
    .selectFrom('outbound_mails')
    .select('id')
    .where('status', '=', 'queued')
    .where('created_at', '<', olderThan)
    .orderBy('created_at')
    .limit(limit)
    .execute();
  return rows.map((r) => r.id);
}
