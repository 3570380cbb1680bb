import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import type { Db, UserRow } from '../../db/database.js';
import { ensureUsers, type UserRef } from '../../db/queries/users.js';
import { isOurAddress } from '../../core/address.js';
import { directRecipients, listStaffRecipients, ticketCreatedMails } from '../../mail/notify.js';
import { insertOutboundMails } from '../../mail/outbox.js';
import { findTicketTags } from '../../mail/tokens.js';
import type { AnalyzedMessage } from './analyze.js';
import { senderBreakerReason, dedupeKey, dedupeMailbox, quotaReason, senderBreakerColumns } from './facts.js';
import { listingFacts } from './pipeline.js';
import type { InboundRow } from './route.js';
import { ccCandidates, firstMessageFields } from './store.js';
import { replyTokens } from './thread.js';

/**
 * The inbound batch's fast path: the common first mail that can only become
 * a new ticket from its sender, with no CCs, attachments or thread evidence.
 * For such messages every rule of routeMessage has the same answer, so the
 * rows it would write one message at a time (dedupe entry, implicit
 * account, ticket, requester, first message, outbox, inbound row) are
 * written for the whole batch in a handful of set-based statements. On a
 * small machine the round trips, not the rows, are what per-message
 * processing pays for. Anything that needs a decision goes back to
 * routeMessage, in the same transaction.
 */

type Cfg = AppContext['config'];
type Sender = UserRef;

export interface Candidate {
  row: InboundRow;
  a: AnalyzedMessage;
}

/** What can be known without the database: nothing here asks for a decision. */
export function isPlainFirstMail(cfg: Cfg, row: InboundRow, a: AnalyzedMessage): boolean {
  return (
    row.release_overrides.length === 0 &&
    a.machine === null &&
    a.from !== null &&
    !isOurAddress(cfg, a.from.address) &&
    a.attachments.length === 0 &&
    a.omittedAttachments.length === 0 &&
    a.inReplyTo.length === 0 &&
    a.references.length === 0 &&
    replyTokens(cfg, a, row.rcpt_to).length === 0 &&
    findTicketTags(cfg.SECRET_KEY, a.text).length === 0 &&
    ccCandidates(cfg, a, a.from.address).length === 0
  );
}

interface BulkFactsRow {
  id: number;
  inserted: boolean;
  paused: number | null;
  recent: number;
  bytes_today: string;
  sender_id: number | null;
  sender_email: string | null;
  sender_role: UserRow['role'] | null;
  sender_locale: UserRow['locale'] | null;
}

/**
 * gatherFacts for many messages in one statement. Claims each message's
 * dedupe entry; a message whose entry was already taken (a re-delivery, or
 * its twin earlier in this batch) is left to routeMessage, which finds the
 * owner. The same goes for a sender the breaker would stop.
 */
async function bulkFacts(trx: Db, cfg: Cfg, cands: Candidate[]): Promise<Map<number, { sender: Sender | null }>> {
  const { rows } = await sql<BulkFactsRow>`
    WITH input AS (
      SELECT * FROM unnest(${cands.map((c) => c.row.id)}::bigint[], ${cands.map((c) => dedupeMailbox(cfg, c.row.rcpt_to))}::text[],
                           ${cands.map((c) => dedupeKey(c.a))}::text[], ${cands.map((c) => c.a.from!.address)}::text[]) AS i(id, box, key, sender)
    ), ins AS (
      INSERT INTO inbound_dedupe (support_address, dedupe_key, inbound_message_id)
      SELECT box, key, id FROM input
      ON CONFLICT (support_address, dedupe_key) DO NOTHING
      RETURNING inbound_message_id
    )
    SELECT i.id::int AS id,
      EXISTS (SELECT 1 FROM ins WHERE ins.inbound_message_id = i.id) AS inserted,
      ${senderBreakerColumns(cfg, sql.ref('i.sender'), sql.ref('i.id'))},
      u.id AS sender_id, u.email AS sender_email, u.role AS sender_role, u.locale AS sender_locale
    FROM input i LEFT JOIN users u ON lower(u.email) = i.sender
  `.execute(trx);
  const fast = new Map<number, { sender: Sender | null }>();
  for (const f of rows) {
    if (!f.inserted || senderBreakerReason(cfg, f.paused, f.recent) !== null || quotaReason(cfg, f.bytes_today) !== null) continue;
    if (f.sender_id === null) {
      if (cfg.REGISTRATION === 'closed') continue;
      fast.set(Number(f.id), { sender: null });
    } else if (f.sender_role === 'customer') {
      fast.set(Number(f.id), { sender: { id: f.sender_id, email: f.sender_email!, role: f.sender_role, locale: f.sender_locale! } });
    }
  }
  return fast;
}

async function createTickets(
  trx: Db,
  items: Array<{ c: Candidate; sender: Sender }>,
): Promise<Array<{ inboundId: number; ticketId: number; messageId: number }>> {
  const fields = items.map(({ c }) => firstMessageFields(c.a));
  const { rows } = await sql<{ inbound_id: number; ticket_id: number; message_id: number }>`
    WITH input AS MATERIALIZED (
      SELECT i.*, nextval(pg_get_serial_sequence('tickets', 'id')) AS ticket_id, nextval(pg_get_serial_sequence('messages', 'id')) AS message_row_id
      FROM unnest(${items.map((i) => i.c.row.id)}::bigint[], ${items.map((i) => i.c.a.subject)}::text[], ${items.map((i) => i.sender.id)}::bigint[],
                  ${fields.map((f) => f.bodyText)}::text[], ${fields.map((f) => f.bodyHtml)}::text[], ${fields.map((f) => f.originalText)}::text[],
                  ${fields.map((f) => f.originalHtml)}::text[], ${fields.map((f) => f.messageId)}::text[])
        AS i(inbound_id, subject, requester_id, body_text, body_html, original_text, original_html, header_message_id)
    ), t AS (
      INSERT INTO tickets (id, subject, requester_id, via, status, updated_at)
      SELECT ticket_id, subject, requester_id, 'email', 'new', now() FROM input
    ), p AS (
      INSERT INTO ticket_participants (ticket_id, user_id, role) SELECT ticket_id, requester_id, 'requester' FROM input
    ), m AS (
      INSERT INTO messages (id, ticket_id, author_id, visibility, via, body_text, body_html, original_text, original_html, message_id, inbound_message_id)
      SELECT message_row_id, ticket_id, requester_id, 'public', 'email', body_text, body_html, original_text, original_html, header_message_id, inbound_id FROM input
    )
    SELECT inbound_id::int, ticket_id::int, message_row_id::int AS message_id FROM input
  `.execute(trx);
  return rows.map((r) => ({ inboundId: Number(r.inbound_id), ticketId: Number(r.ticket_id), messageId: Number(r.message_id) }));
}

async function markProcessed(trx: Db, done: Array<{ c: Candidate; ticketId: number }>): Promise<void> {
  const facts = done.map((d) => listingFacts(d.c.a));
  await sql`
    UPDATE inbound_messages m
    SET header_message_id = v.header_message_id, from_address = v.from_address, subject = v.subject,
        status = 'processed', reason = NULL, error = NULL, ticket_id = v.ticket_id, processed_at = now(), auth = v.auth::jsonb
    FROM unnest(${done.map((d) => d.c.row.id)}::bigint[], ${facts.map((f) => f.header_message_id)}::text[],
                ${facts.map((f) => f.from_address)}::text[], ${facts.map((f) => f.subject)}::text[], ${done.map((d) => d.ticketId)}::bigint[],
                ${done.map((d) => (d.c.a.senderAuth ? JSON.stringify(d.c.a.senderAuth) : null))}::text[])
      AS v(id, header_message_id, from_address, subject, ticket_id, auth)
    WHERE m.id = v.id
  `.execute(trx);
}

export interface BulkOutcome {
  /** inbound id → ticket id, for the messages written here. */
  tickets: Map<number, number>;
  outboxIds: number[];
}

/**
 * Writes the plain first mails among `cands` (rows locked by the caller) and
 * returns what it wrote; the others are for routeMessage. One message per
 * sender per batch: a sender's second mail in the same batch must see the
 * first one's row for the breaker, so it takes the per-message path.
 */
export async function writePlainFirstMails(trx: Db, cfg: Cfg, cands: Candidate[]): Promise<BulkOutcome> {
  const none: BulkOutcome = { tickets: new Map(), outboxIds: [] };
  const seenSenders = new Set<string>();
  const firsts = cands.filter((c) => {
    const from = c.a.from!.address;
    if (seenSenders.has(from)) return false;
    seenSenders.add(from);
    return true;
  });
  if (firsts.length === 0) return none;
  const facts = await bulkFacts(trx, cfg, firsts);
  const fast = firsts.filter((c) => facts.has(c.row.id));
  if (fast.length === 0) return none;

  const newSenders = fast.filter((c) => facts.get(c.row.id)!.sender === null);
  const created = await ensureUsers(
    trx,
    newSenders.map((c) => ({ email: c.a.from!.address, name: c.a.from!.name || null, locale: c.a.japanese ? 'ja' : cfg.DEFAULT_LOCALE })),
  );
  const items = fast.map((c) => ({ c, sender: facts.get(c.row.id)!.sender ?? created.get(c.a.from!.address)! }));
  // An address someone else created meanwhile (`cli staff add`) may be staff: rare enough to redo the batch one by one.
  const customers = items.filter((i) => i.sender.role === 'customer');
  if (customers.length < items.length) throw new Error('bulk inbound: a new sender turned out not to be a customer');

  const written = await createTickets(trx, customers);
  const byInbound = new Map(written.map((w) => [w.inboundId, w]));
  const staff = await listStaffRecipients(trx);
  const mails = customers.flatMap(({ c, sender }) => {
    const w = byInbound.get(c.row.id)!;
    return ticketCreatedMails(
      cfg,
      { type: 'ticket_created', ticketId: w.ticketId, messageId: w.messageId, authorId: sender.id, directTo: directRecipients(c.a) },
      sender,
      sender.id,
      staff,
    );
  });
  const outboxIds = await insertOutboundMails(trx, cfg, mails);
  await markProcessed(
    trx,
    customers.map(({ c }) => ({ c, ticketId: byInbound.get(c.row.id)!.ticketId })),
  );
  return { tickets: new Map(written.map((w) => [w.inboundId, w.ticketId])), outboxIds };
}
