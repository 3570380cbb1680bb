import { sql } from 'kysely';
import type { Config } from '../../config.js';
import type { CsatRating, Db, OutboundMailRow, TicketPriority, TicketStatus, UserRole } from '../database.js';
import { preparedName } from '../prepared-client.js';

/**
 * Everything needed to decide on and render one outbox row, read in ONE
 * statement: the row itself (optionally locked), the recipient's name, the
 * ticket with its requester, the message with its author and attachment
 * list (not their bytes: the delivery step reads those outside the
 * transaction), the earlier public messages to quote, the conversation's
 * Message-IDs for threading, and the loop-breaker
 * counters for the recipient. Sending is the hot path (one call per mail),
 * and on a small machine every round trip to PostgreSQL shows up in the
 * throughput.
 */

export interface ThreadEntry {
  /** Stored (lower-cased) Message-ID. */
  id: string;
  /** The inbound header's original spelling, when the message came by mail. */
  original: string | null;
  /** True when the recipient has seen it (they wrote it, or we sent it to them). */
  seen: boolean;
}

export interface BreakerCounts {
  /** Acknowledgements sent to the recipient in the last hour (windows longer than 7 days are not supported). */
  acks: number;
  /** Ticket mail sent to the recipient on this ticket within BREAKER_WINDOW_MS. */
  perTicket: number;
  /** Customer-facing ticket mail sent to the recipient within BREAKER_WINDOW_MS. */
  customer: number;
}

export interface MailAttachment {
  id: number;
  filename: string;
  size: number;
  contentType: string;
  inline: boolean;
}

/** An earlier public message, quoted below the new one. */
export interface HistoryEntry {
  id: number;
  text: string;
  /** ISO timestamp (JSON). */
  at: string;
  authorName: string | null;
  authorEmail: string;
  authorRole: UserRole;
}

export interface MailContext {
  toName: string | null;
  /** The recipient's zone from /profile; null: not chosen (PORTAL_TIME_ZONE applies). */
  toTimeZone: string | null;
  ticket: {
    id: number;
    subject: string;
    status: TicketStatus;
    priority: TicketPriority;
    requesterName: string | null;
    requesterEmail: string;
    /** The requester's satisfaction rating and comment (shown to staff only). */
    csatRating: CsatRating | null;
    csatComment: string | null;
  } | null;
  message: { id: number; text: string; authorName: string | null; authorEmail: string; authorRole: UserRole } | null;
  attachments: MailAttachment[];
  /**
   * Public messages before this one, newest first (up to MAIL_HISTORY_MESSAGES),
   * then the ticket's first message when the recipient was never mailed on
   * this ticket before and it is not already among them. Ticket mails only.
   */
  history: HistoryEntry[];
  /** Oldest first. */
  thread: ThreadEntry[];
  counts: BreakerCounts;
}

interface Raw extends OutboundMailRow {
  x_to_name: string | null;
  x_to_time_zone: string | null;
  x_ticket_id: number | null;
  x_subject: string | null;
  x_status: TicketStatus | null;
  x_priority: TicketPriority | null;
  x_csat_rating: CsatRating | null;
  x_csat_comment: string | null;
  x_requester_name: string | null;
  x_requester_email: string | null;
  x_message_id: number | null;
  x_text: string | null;
  x_author_name: string | null;
  x_author_email: string | null;
  x_author_role: UserRole | null;
  x_attachments: MailAttachment[];
  x_history: HistoryEntry[];
  x_original: HistoryEntry | null;
  x_thread: ThreadEntry[];
  x_acks: number;
  x_per_ticket: number;
  x_customer: number;
}

// Listed, not o.*: a prepared statement must keep its result shape across migrations.
const ROW_COLUMNS = [
  'id',
  'kind',
  'ticket_id',
  'ticket_message_id',
  'user_id',
  'recipient',
  'locale',
  'payload',
  'message_id',
  'status',
  'attempts',
  'last_error',
  'bounced_at',
  'bounce_inbound_id',
  'created_at',
  'sent_at',
] as const satisfies ReadonlyArray<keyof OutboundMailRow>;

export type MailContextConfig = Pick<Config, 'BREAKER_WINDOW_MS' | 'MAIL_HISTORY_MESSAGES'>;

const historyEntry = (m: string, a: string) =>
  sql.raw(
    `json_build_object('id', ${m}.id, 'text', ${m}.body_text, 'at', ${m}.created_at, 'authorName', ${a}.name, 'authorEmail', ${a}.email, 'authorRole', ${a}.role)`,
  );

/** The statement itself (exported so it can be EXPLAINed). */
export function mailContextQuery(config: MailContextConfig, outboundId: number | number[], opts: { lock: boolean }) {
  const windowSecs = config.BREAKER_WINDOW_MS / 1000;
  // SKIP LOCKED: another worker holding this row is sending it right now.
  const lock = opts.lock ? sql`FOR UPDATE OF o SKIP LOCKED` : sql``;
  // Prepared per connection: planning this statement costs ~10× its execution.
  // A batch (an id array) has its own statement: one row's plan stays the plan for one row.
  const many = Array.isArray(outboundId);
  const name = sql.raw(preparedName(`rl_mail_context${many ? 's' : ''}${opts.lock ? '_lock' : ''}`));
  const where = many ? sql`o.id = ANY(${outboundId}::bigint[])` : sql`o.id = ${outboundId}`;
  return sql<Raw>`${name}
    SELECT ${sql.raw(ROW_COLUMNS.map((c) => `o.${c}`).join(', '))},
      u.name AS x_to_name, u.time_zone AS x_to_time_zone,
      t.id AS x_ticket_id, t.subject AS x_subject, t.status AS x_status, t.priority AS x_priority,
      t.csat_rating AS x_csat_rating, t.csat_comment AS x_csat_comment,
      r.name AS x_requester_name, r.email AS x_requester_email,
      m.id AS x_message_id, m.body_text AS x_text,
      a.name AS x_author_name, a.email AS x_author_email, a.role AS x_author_role,
      COALESCE((
        SELECT json_agg(json_build_object('id', at.id, 'filename', at.filename, 'size', at.size, 'contentType', at.content_type, 'inline', at.inline) ORDER BY at.id)
          FROM attachments at WHERE at.message_id = m.id
      ), '[]'::json) AS x_attachments,
      COALESCE((
        SELECT json_agg(${historyEntry('hm', 'ha')} ORDER BY hm.id DESC)
          FROM (
            SELECT * FROM messages hm0
             WHERE hm0.ticket_id = o.ticket_id AND hm0.visibility = 'public'
               AND o.kind IN ('staff_notification', 'ticket_update')
               AND hm0.id < COALESCE(o.ticket_message_id, 9223372036854775807)
             ORDER BY hm0.id DESC LIMIT ${config.MAIL_HISTORY_MESSAGES}
          ) hm JOIN users ha ON ha.id = hm.author_id
      ), '[]'::json) AS x_history,
      (
        -- The original request, for a recipient this ticket never mailed before (a late CC, a new colleague).
        SELECT ${historyEntry('fm', 'fa')}
          FROM messages fm JOIN users fa ON fa.id = fm.author_id
         WHERE fm.ticket_id = o.ticket_id AND fm.visibility = 'public'
           AND o.kind IN ('staff_notification', 'ticket_update')
           AND fm.id < COALESCE(o.ticket_message_id, 9223372036854775807)
           AND NOT EXISTS (SELECT 1 FROM outbound_mails fo WHERE fo.ticket_id = o.ticket_id AND fo.recipient = o.recipient AND fo.status = 'sent' AND fo.id < o.id)
         ORDER BY fm.id LIMIT 1
      ) AS x_original,
      COALESCE((
        SELECT json_agg(json_build_object('id', th.id, 'original', th.original, 'seen', th.seen) ORDER BY th.at, th.ord, th.seq)
          FROM (
            SELECT mm.message_id AS id, im.header_message_id AS original, mm.created_at AS at,
                   (mm.author_id IS NOT DISTINCT FROM o.user_id) AS seen, 0 AS ord, mm.id AS seq
              FROM messages mm LEFT JOIN inbound_messages im ON im.id = mm.inbound_message_id
             WHERE mm.ticket_id = o.ticket_id AND mm.message_id IS NOT NULL
               -- An internal note's id (it may name an agent's laptop) is for staff eyes only.
               AND (mm.visibility = 'public' OR o.kind = 'staff_notification')
            UNION ALL
            SELECT oo.message_id, NULL, oo.created_at, true, 1, oo.id
              FROM outbound_mails oo
             WHERE oo.ticket_id = o.ticket_id AND oo.recipient = o.recipient AND oo.status = 'sent' AND oo.id < o.id
          ) th
      ), '[]'::json) AS x_thread,
      b.acks AS x_acks, b.per_ticket AS x_per_ticket, b.customer AS x_customer
    FROM outbound_mails o
    LEFT JOIN users u ON u.id = o.user_id
    LEFT JOIN tickets t ON t.id = o.ticket_id
    LEFT JOIN users r ON r.id = t.requester_id
    LEFT JOIN messages m ON m.id = o.ticket_message_id
    LEFT JOIN users a ON a.id = m.author_id
    CROSS JOIN LATERAL (
      -- Windows are on sent_at (mail that waited out a relay outage counts when it went out);
      -- the created_at bound only keeps the index scan short for long-lived recipients.
      SELECT count(*) FILTER (WHERE s.kind = 'acknowledgement' AND s.sent_at > now() - interval '1 hour')::int AS acks,
             count(*) FILTER (WHERE s.ticket_id = o.ticket_id AND s.sent_at > now() - make_interval(secs => ${windowSecs}))::int AS per_ticket,
             count(*) FILTER (WHERE s.kind IN ('acknowledgement', 'ticket_update') AND s.sent_at > now() - make_interval(secs => ${windowSecs}))::int AS customer
        FROM outbound_mails s
       WHERE s.recipient = o.recipient AND s.status = 'sent'
         AND s.kind IN ('acknowledgement', 'staff_notification', 'ticket_update')
         AND s.created_at > now() - interval '7 days'
    ) b
    WHERE ${where}
    ${lock}
  `;
}

export interface LoadedMail {
  row: OutboundMailRow;
  context: MailContext;
}

function toLoaded(raw: Raw): LoadedMail {
  const {
    x_to_name,
    x_to_time_zone,
    x_ticket_id,
    x_subject,
    x_status,
    x_priority,
    x_csat_rating,
    x_csat_comment,
    x_requester_name,
    x_requester_email,
    x_message_id,
    x_text,
    x_author_name,
    x_author_email,
    x_author_role,
    x_attachments,
    x_history,
    x_original,
    x_thread,
    x_acks,
    x_per_ticket,
    x_customer,
    ...row
  } = raw;
  const history = x_original && !x_history.some((h) => h.id === x_original.id) ? [...x_history, x_original] : x_history;
  return {
    row,
    context: {
      toName: x_to_name,
      toTimeZone: x_to_time_zone,
      ticket:
        x_ticket_id !== null && x_status !== null
          ? {
              id: x_ticket_id,
              subject: x_subject ?? '',
              status: x_status,
              priority: x_priority ?? 'normal',
              requesterName: x_requester_name,
              requesterEmail: x_requester_email ?? '',
              csatRating: x_csat_rating,
              csatComment: x_csat_comment,
            }
          : null,
      message:
        x_message_id !== null && x_author_email !== null && x_author_role !== null
          ? { id: x_message_id, text: x_text ?? '', authorName: x_author_name, authorEmail: x_author_email, authorRole: x_author_role }
          : null,
      attachments: x_attachments,
      history,
      thread: x_thread,
      counts: { acks: x_acks, perTicket: x_per_ticket, customer: x_customer },
    },
  };
}

export async function loadMailContext(
  db: Db,
  config: MailContextConfig,
  outboundId: number,
  opts: { lock: boolean },
): Promise<LoadedMail | null> {
  const { rows } = await mailContextQuery(config, outboundId, opts).execute(db);
  return rows[0] ? toLoaded(rows[0]) : null;
}

/** loadMailContext for several rows in one statement; a row another worker holds (lock) or that is gone is absent. */
export async function loadMailContexts(
  db: Db,
  config: MailContextConfig,
  ids: number[],
  opts: { lock: boolean },
): Promise<Map<number, LoadedMail>> {
  const { rows } = await mailContextQuery(config, ids, opts).execute(db);
  return new Map(rows.map((r) => [r.id, toLoaded(r)]));
}
