import type { AppContext } from '../../context.js';
import { authenticateSender } from '../../mail/sender-auth.js';
import { ipKey } from '../../net/ip-key.js';
import { LOOP_HEADER } from '../../mail/compose.js';
import type { AnalyzedMessage } from './analyze.js';
import { returnPathVerdict } from './bounce.js';
import { ParseFailedError } from './parse-pool.js';
import type { InboundRow, Outcome } from './route-batch.js';

/**
 * The steps of processing one message, which batch.ts runs for the rows of
 * a job: parse and authenticate, before the transaction (route-batch.ts
 * decides and writes inside it).
 */

/** After `held release` of a parse failure the operator asked for a real try. */
export const RELEASED_PARSE_TIMEOUT_MS = 60_000;

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
