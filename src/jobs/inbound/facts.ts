import { sql } from 'kysely';
import type { Config } from '../../config.js';
import type { Db, InboundMessageRow, UserRow } from '../../db/database.js';
import { ensureUser } from '../../db/queries/users.js';
import { normalizeMessageId } from '../../core/message-id.js';
import type { AnalyzedMessage } from './analyze.js';

/**
 * What the database knows about a message before any rule runs: is it a
 * duplicate, how much has its sender sent lately, does the sender have an
 * account. One statement, because every round trip costs more on the hot
 * path than the queries themselves; it also claims the dedupe ledger entry.
 */

type Cfg = Pick<Config, 'SUPPORT_ADDRESSES' | 'SENDER_BREAKER_WINDOW_MS' | 'SENDER_BREAKER_MAX' | 'SENDER_DAILY_BYTES' | 'DEFAULT_LOCALE'>;
export type Sender = Pick<UserRow, 'id' | 'email' | 'role'>;

export interface MessageFacts {
  /** Another row already holds this message's dedupe entry: its ticket. */
  duplicateOf: { inboundId: number; ticketId: number | null } | null;
  /** The per-sender breaker's verdict (null: not tripped). */
  breaker: string | null;
  /** The per-sender daily byte quota's verdict (null: within it). */
  quota: string | null;
  sender: Sender | null;
}

/** The mailbox a message was delivered to, for per-address dedupe: reply addresses count as their support address. */
export function dedupeMailbox(cfg: Pick<Config, 'SUPPORT_ADDRESSES'>, rcptTo: string[]): string {
  const boxes = rcptTo.map((r) => {
    const lower = r.toLowerCase();
    const at = lower.lastIndexOf('@');
    return `${lower.slice(0, at).split('+')[0]}${lower.slice(at)}`;
  });
  return boxes.filter((b) => cfg.SUPPORT_ADDRESSES.includes(b)).sort()[0] ?? boxes.sort()[0] ?? cfg.SUPPORT_ADDRESSES[0]!;
}

/** The dedupe ledger key: the Message-ID, or a hash of the raw bytes when there is none. */
export function dedupeKey(a: Pick<AnalyzedMessage, 'messageId' | 'sha256'>): string {
  return a.messageId ? `mid:${normalizeMessageId(a.messageId)}` : `sha256:${a.sha256}`;
}

/** The per-sender breaker's verdict from the sender's paused marker and recent count (null: not tripped). */
export function senderBreakerReason(
  cfg: Pick<Config, 'SENDER_BREAKER_MAX' | 'SENDER_BREAKER_WINDOW_MS'>,
  paused: number | null,
  recent: number,
): string | null {
  if (paused !== null) return `sender paused for an hour after tripping the breaker (message ${paused})`;
  if (recent + 1 > cfg.SENDER_BREAKER_MAX)
    return `${recent + 1} messages in ${cfg.SENDER_BREAKER_WINDOW_MS / 1000}s (max ${cfg.SENDER_BREAKER_MAX})`;
  return null;
}

/**
 * The daily byte quota's verdict: bytes the sender's processed mail of the
 * last 24 h plus this message bring (null: within SENDER_DAILY_BYTES). Held
 * mail does not count, so a flood forged in someone's name is held without
 * using up that person's quota.
 */
export function quotaReason(cfg: Pick<Config, 'SENDER_DAILY_BYTES'>, bytesToday: number | string): string | null {
  const n = Number(bytesToday);
  return n > cfg.SENDER_DAILY_BYTES ? `${n} bytes in 24 h with this message (max SENDER_DAILY_BYTES=${cfg.SENDER_DAILY_BYTES})` : null;
}

/**
 * The breaker's inputs for message `id` from `sender`, as the output columns
 * `paused` and `recent` (gatherFacts and the batch's bulk facts count alike).
 * Either argument may be a value or a column reference.
 */
export function senderBreakerColumns(cfg: Pick<Config, 'SENDER_BREAKER_WINDOW_MS'>, sender: unknown, id: unknown) {
  return sql`
      (SELECT m.id FROM inbound_messages m
        WHERE m.from_address = ${sender} AND m.status = 'held' AND m.reason = 'loop' AND m.id <> ${id}
          AND m.processed_at > now() - interval '1 hour' LIMIT 1) AS paused,
      (SELECT count(*) FROM inbound_messages m
        WHERE m.from_address = ${sender} AND m.id <> ${id} AND m.status IN ('processed', 'held')
          AND (m.reason IS NULL OR m.reason <> 'duplicate')
          AND m.received_at > now() - make_interval(secs => ${cfg.SENDER_BREAKER_WINDOW_MS / 1000}))::int AS recent,
      ((SELECT coalesce(sum(m.size), 0) FROM inbound_messages m
        WHERE m.from_address = ${sender} AND m.id <> ${id} AND m.status = 'processed'
          AND m.received_at > now() - interval '1 day')
       + (SELECT m.size FROM inbound_messages m WHERE m.id = ${id}))::bigint AS bytes_today`;
}

interface FactsRow {
  inserted: number;
  existing_id: number | null;
  existing_ticket_id: number | null;
  paused: number | null;
  recent: number;
  bytes_today: string;
  sender_id: number | null;
  sender_email: string | null;
  sender_role: Sender['role'] | null;
}

/**
 * The breaker counts committed rows only, so messages from one sender
 * processed at the same moment may overshoot by at most INBOUND_CONCURRENCY:
 * a breaker against loops does not need to be exact, and a per-sender lock
 * would serialise every message on the hot path.
 */
export async function gatherFacts(
  trx: Db,
  cfg: Cfg,
  row: Pick<InboundMessageRow, 'id' | 'rcpt_to'>,
  a: AnalyzedMessage,
): Promise<MessageFacts> {
  const box = dedupeMailbox(cfg, row.rcpt_to);
  const key = dedupeKey(a);
  const from = a.from?.address ?? '';
  const { rows } = await sql<FactsRow>`
    WITH ins AS (
      INSERT INTO inbound_dedupe (support_address, dedupe_key, inbound_message_id)
      VALUES (${box}, ${key}, ${row.id})
      ON CONFLICT (support_address, dedupe_key) DO NOTHING
      RETURNING 1
    ), prior AS (
      SELECT d.inbound_message_id, m.ticket_id FROM inbound_dedupe d JOIN inbound_messages m ON m.id = d.inbound_message_id
      WHERE d.support_address = ${box} AND d.dedupe_key = ${key}
    ), sender AS (
      SELECT id, email, role FROM users WHERE lower(email) = ${from}
    )
    SELECT
      (SELECT count(*) FROM ins)::int AS inserted,
      (SELECT inbound_message_id FROM prior) AS existing_id,
      (SELECT ticket_id FROM prior) AS existing_ticket_id,
      ${senderBreakerColumns(cfg, from, row.id)},
      (SELECT id FROM sender) AS sender_id,
      (SELECT email FROM sender) AS sender_email,
      (SELECT role FROM sender) AS sender_role
  `.execute(trx);
  const f = rows[0]!;

  let duplicateOf: MessageFacts['duplicateOf'] = null;
  if (f.inserted === 0) {
    // The statement's snapshot may predate a concurrent delivery's commit that made our insert a no-op: look again.
    const prior =
      f.existing_id !== null
        ? { inbound_message_id: f.existing_id, ticket_id: f.existing_ticket_id }
        : await trx
            .selectFrom('inbound_dedupe as d')
            .innerJoin('inbound_messages as m', 'm.id', 'd.inbound_message_id')
            .select(['d.inbound_message_id', 'm.ticket_id'])
            .where('d.support_address', '=', box)
            .where('d.dedupe_key', '=', key)
            .executeTakeFirst();
    // Our own ledger entry means this row is being re-run (held release), not re-delivered.
    if (prior && prior.inbound_message_id !== row.id) duplicateOf = { inboundId: prior.inbound_message_id, ticketId: prior.ticket_id };
  }

  const breaker = senderBreakerReason(cfg, f.paused, f.recent);
  const sender = f.sender_id !== null ? { id: f.sender_id, email: f.sender_email!, role: f.sender_role! } : null;
  return { duplicateOf, breaker, quota: quotaReason(cfg, f.bytes_today), sender };
}

/** The implicit account for a new sender: no password, unverified, name from the From header. */
export async function createSender(trx: Db, cfg: Cfg, a: AnalyzedMessage): Promise<Sender> {
  const { user } = await ensureUser(trx, {
    email: a.from!.address,
    name: a.from!.name || null,
    locale: a.japanese ? 'ja' : cfg.DEFAULT_LOCALE,
  });
  return user;
}
