import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import { authenticateSender } from '../../mail/sender-auth.js';
import { ipKey } from '../../net/ip-key.js';
import { LOOP_HEADER } from '../../mail/compose.js';
import { requeueInbound } from '../enqueue-inbound.js';
import { enqueueOutboundAll } from '../send-mail.js';
import type { AnalyzedMessage } from './analyze.js';
import { returnPathVerdict } from './bounce.js';
import { held } from './held.js';
import { ParseFailedError } from './parse-pool.js';
import { decideAndApply, type InboundRow, type Outcome } from './route-batch.js';
import { decision } from './apply-plans.js';
import { markInboundDecided } from '../../db/queries/inbound-messages.js';

/**
 * The process-inbound job: parse off-thread, then decide and write in ONE
 * transaction with the inbound row locked and its status re-checked, so a
 * second run (retry, sweeper, duplicate job) finds it done and does nothing.
 * Outbox rows commit with the ticket change; their jobs are enqueued after.
 */

/** After `held release` of a parse failure the operator asked for a real try. */
export const RELEASED_PARSE_TIMEOUT_MS = 60_000;
/** Unexpected errors are retried; after this many runs the message is held instead of retried forever. */
export const MAX_PROCESSING_ATTEMPTS = 5;

export interface InboundResult {
  inboundId: number;
  status: 'processed' | 'held' | 'skipped';
  reason: string | null;
  ticketId: number | null;
}

export function result(inboundId: number, outcome: Outcome | null): InboundResult {
  if (!outcome) return { inboundId, status: 'skipped', reason: null, ticketId: null };
  if (outcome.status === 'held') return { inboundId, status: 'held', reason: outcome.held.reason, ticketId: outcome.held.ticketId };
  return { inboundId, status: 'processed', reason: outcome.reason, ticketId: outcome.ticketId };
}

/** Parses off-thread; a message the parser cannot handle within its limits comes back as the ParseFailedError. */
export async function parseInbound(ctx: AppContext, row: ParseRow): Promise<AnalyzedMessage | ParseFailedError> {
  const parsed = await analyzeInbound(ctx, row);
  if (!(parsed instanceof ParseFailedError) && !parsed.machine) parsed.machine = returnPathVerdict(ctx.config, row.rcpt_to);
  // DNS for SPF/DKIM/DMARC happens here, before any transaction: never network I/O while holding locks.
  // Machine mail and mail without a From gain nothing from a verdict.
  if (!(parsed instanceof ParseFailedError) && parsed.from && !parsed.machine) {
    parsed.senderAuth = await authenticateSender(ctx, {
      raw: row.raw,
      mailFrom: row.mail_from,
      clientAddress: row.client_address,
      helo: row.helo,
      fromAddress: parsed.from.address,
    });
  }
  return parsed;
}

type ParseRow = Pick<InboundRow, 'raw' | 'mail_from' | 'rcpt_to' | 'release_overrides' | 'client_address' | 'helo'>;

async function analyzeInbound(ctx: AppContext, row: ParseRow): Promise<AnalyzedMessage | ParseFailedError> {
  // "No single message may hold a CPU core for more than 2 s" (INBOUND_PARSE_TIMEOUT_MS).
  const timeout = row.release_overrides.includes('parse_failed') ? RELEASED_PARSE_TIMEOUT_MS : ctx.config.INBOUND_PARSE_TIMEOUT_MS;
  try {
    return await ctx.parsePool.analyze(
      row.raw,
      {
        envelopeFrom: row.mail_from,
        mailDomain: ctx.config.MAIL_DOMAIN,
        loopHeader: LOOP_HEADER,
        attachmentMaxBytes: ctx.config.ATTACHMENT_MAX_BYTES,
      },
      timeout,
      ipKey(row.client_address),
    );
  } catch (err) {
    if (err instanceof ParseFailedError) return err;
    throw err;
  }
}

/** Rules and writes for one message whose row the caller's transaction has locked and found `received`: a batch of one. */
export async function decideLocked(
  ctx: AppContext,
  trx: AppContext['db'],
  row: InboundRow,
  parsed: AnalyzedMessage | ParseFailedError,
): Promise<Outcome> {
  return (await decideAndApply(ctx, trx, [{ row, parsed }])).get(row.id)!;
}

export const ROW_COLUMNS = ['id', 'raw', 'mail_from', 'rcpt_to', 'client_address', 'helo', 'release_overrides'] as const;

/**
 * Parse and authenticate first (CPU in the pool, DNS for SPF/DKIM/DMARC),
 * then one transaction: lock the row, re-check it is still `received`,
 * decide, write, mark. The raw bytes never change, so parsing before the
 * lock is safe; a row another run took meanwhile is skipped.
 */
async function runOnce(ctx: AppContext, inboundId: number): Promise<Outcome | null> {
  const row = await ctx.db
    .selectFrom('inbound_messages')
    .select(ROW_COLUMNS)
    .where('id', '=', inboundId)
    .where('status', '=', 'received')
    .executeTakeFirst();
  if (!row) return null;
  const parsed = await parseInbound(ctx, row);
  return ctx.db.transaction().execute(async (trx) => {
    const locked = await trx
      .selectFrom('inbound_messages')
      .select(['status', 'release_overrides'])
      .where('id', '=', inboundId)
      .forUpdate()
      .executeTakeFirst();
    if (!locked || locked.status !== 'received') return null;
    return decideLocked(ctx, trx, { ...row, release_overrides: locked.release_overrides }, parsed);
  });
}

export async function processInboundMessage(ctx: AppContext, inboundId: number): Promise<InboundResult> {
  let outcome: Outcome | null;
  try {
    outcome = await runOnce(ctx, inboundId);
  } catch (err) {
    // Failed runs are counted outside the rolled-back transaction; retried by BullMQ until the limit, then held.
    const counted = await ctx.db
      .updateTable('inbound_messages')
      .set({ attempts: sql`attempts + 1` as never })
      .where('id', '=', inboundId)
      .where('status', '=', 'received')
      .returning('attempts')
      .executeTakeFirst()
      .catch(() => undefined);
    if (!counted || counted.attempts < MAX_PROCESSING_ATTEMPTS) throw err;
    const message = (err instanceof Error ? err.message : String(err)).slice(0, 2000);
    ctx.log.error({ inboundId, err: message, attempts: counted.attempts }, 'inbound processing keeps failing; holding the message');
    outcome = await ctx.db.transaction().execute(async (trx) => {
      const locked = await trx.selectFrom('inbound_messages').select('status').where('id', '=', inboundId).forUpdate().executeTakeFirst();
      if (locked?.status !== 'received') return null;
      const failed: Outcome = { status: 'held', held: held('processing_error', message) };
      await markInboundDecided(trx, [decision(inboundId, failed, null)]);
      return failed;
    });
  }

  if (outcome) ctx.metrics.inboundProcessed.inc({ path: 'rules' });
  if (outcome) await enqueueOutboundAll(ctx, outcome.status === 'processed' ? outcome.outboxIds : outcome.held.outboxIds);
  if (outcome?.status === 'processed' && outcome.requeue?.length) await requeueInbound(ctx, outcome.requeue);
  const r = result(inboundId, outcome);
  ctx.log.debug(r, 'inbound message processed');
  return r;
}
