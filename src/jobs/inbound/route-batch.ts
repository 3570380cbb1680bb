import type { AppContext } from '../../context.js';
import type { Db } from '../../db/database.js';
import { markInboundDecided } from '../../db/queries/inbound-messages.js';
import { normalizeMessageId } from '../../core/message-id.js';
import type { AnalyzedMessage } from './analyze.js';
import { applyPlans, decision, type Outcome } from './apply-plans.js';
import { decide, type BatchMessage, type InboundRow } from './decide.js';
import { dedupeKey, dedupeMailbox, gatherFacts } from './gather-facts.js';
import { held } from './held.js';
import { ParseFailedError } from './parse-pool.js';
import { ccCandidates } from './store.js';
import { evidenceTicketIds } from './thread.js';

/**
 * The seam between the job orchestration (batch.ts, pipeline.ts) and the
 * rules: a batch of parsed messages whose rows the caller's transaction has
 * locked and found `received` is decided and written. A batch of one is just
 * a batch.
 *
 * Messages of one batch can depend on each other: a sender's second mail
 * must see the first for the breaker, a re-delivery must find its twin's
 * ticket, a reply the ticket its parent opened. So the batch is decided in
 * rounds, in id order; a round takes at most one message per sender or CC
 * address, dedupe key, Message-ID and matched ticket, and a message waits
 * for every earlier one it shares any of these with. Each round's facts are
 * gathered after the previous round's writes, in the same transaction, so
 * the result is what one-by-one processing in id order would give.
 */

export type { Outcome } from './apply-plans.js';
export type { InboundRow } from './decide.js';

export interface BatchItem {
  row: InboundRow;
  parsed: AnalyzedMessage | ParseFailedError;
}

/** What a message shares with others, as far as it can be known before the database is asked. */
function keysOf(cfg: AppContext['config'], { row, a }: BatchMessage): string[] {
  const keys = [`dedupe:${dedupeMailbox(cfg, row.rcpt_to)}|${dedupeKey(a)}`];
  if (a.from) {
    keys.push(`addr:${a.from.address}`);
    for (const cc of ccCandidates(cfg, a, a.from.address)) keys.push(`addr:${cc.email.toLowerCase()}`);
  }
  for (const id of [a.messageId ?? '', ...a.inReplyTo, ...a.references]) if (id) keys.push(`mid:${normalizeMessageId(id)}`);
  for (const t of evidenceTicketIds(cfg, a, row.rcpt_to)) keys.push(`ticket:${t}`);
  return keys;
}

/** The next round: each message whose keys no earlier pending message shares. */
function nextRound<T>(pending: T[], keys: (item: T) => string[]): { round: T[]; later: T[] } {
  const taken = new Set<string>();
  const round: T[] = [];
  const later: T[] = [];
  for (const item of pending) {
    const k = keys(item);
    if (k.some((x) => taken.has(x))) later.push(item);
    else round.push(item);
    for (const x of k) taken.add(x);
  }
  return { round, later };
}

export async function decideAndApply(ctx: AppContext, trx: Db, items: BatchItem[]): Promise<Map<number, Outcome>> {
  const outcomes = new Map<number, Outcome>();
  const failed = items.filter((i) => i.parsed instanceof ParseFailedError);
  for (const f of failed) {
    ctx.log.warn({ inboundId: f.row.id, err: (f.parsed as Error).message }, 'inbound message held: parse_failed');
    outcomes.set(f.row.id, { status: 'held', held: held('parse_failed', (f.parsed as Error).message) });
  }
  await markInboundDecided(
    trx,
    failed.map((f) => decision(f.row.id, outcomes.get(f.row.id)!, null)),
  );

  const memo = new Map<number, string[]>();
  const keys = (m: BatchMessage) => memo.get(m.row.id) ?? memo.set(m.row.id, keysOf(ctx.config, m)).get(m.row.id)!;
  let pending: BatchMessage[] = items
    .filter((i) => !(i.parsed instanceof ParseFailedError))
    .map((i) => ({ row: i.row, a: i.parsed as AnalyzedMessage }))
    .sort((x, y) => x.row.id - y.row.id);
  while (pending.length > 0) {
    const { round, later } = nextRound(pending, keys);
    const facts = await gatherFacts(trx, ctx.config, round);
    // Two messages of the round on one ticket: the later waits (with everything after it that shares its keys).
    const ticketKeys = (m: BatchMessage) => {
      const t = facts.get(m.row.id)!.ticket;
      return t ? [`ticket:${t.id}`] : [];
    };
    const { round: now, later: deferred } = nextRound(round, ticketKeys);
    const plans = now.map((m) => ({ plan: decide(ctx.config, facts.get(m.row.id)!, m), m }));
    for (const [id, o] of await applyPlans(ctx, trx, plans)) outcomes.set(id, o);
    pending = [...deferred, ...later].sort((x, y) => x.row.id - y.row.id);
  }
  return outcomes;
}
