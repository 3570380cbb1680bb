import type { AppContext } from '../../context.js';
import {
  countProcessingAttempt,
  findReceivedRows,
  findReceivedSizes,
  lockReceivedRows,
  markInboundDecided,
} from '../../db/queries/inbound-messages.js';
import { requeueInbound } from '../enqueue-inbound.js';
import { enqueueOutboundAfterCommit } from '../send-mail.js';
import { decision } from './apply-plans.js';
import { held } from './held.js';
import { parseInbound, result, type InboundResult } from './pipeline.js';
import { decideAndApply, type Outcome } from './route-batch.js';

/**
 * The process-inbound job's unit of work: the rows of one accept commit.
 *  1. Read the rows still `received`; parse and authenticate them in
 *     parallel, before any transaction (CPU in the parse pool, DNS for
 *     SPF/DKIM/DMARC: never network I/O while holding locks). The raw bytes
 *     never change, so parsing before the lock is safe.
 *  2. One transaction: lock the rows still `received`, decide and write
 *     them, mark each row with its outcome. A row another run took
 *     meanwhile is skipped, so a second run (retry, sweeper, duplicate job)
 *     finds it done and does nothing.
 *  3. After the commit: one job for the outbox rows the batch wrote.
 * If the batch as a whole fails, each row runs alone (a batch of one): a
 * poisoned row fails only itself, its attempt is counted in its row, and
 * after MAX_PROCESSING_ATTEMPTS it is held instead of retried forever.
 */

/**
 * Batches the inbound worker works on at once (src/jobs/batch-worker.ts),
 * each of the jobs that were waiting, up to INBOUND_CONCURRENCY rows: two,
 * so one is in the parse threads while the other's transaction writes.
 * More only contend (bench:inbound took 109 s instead of 82 s to ticket
 * 10,000 messages with four large jobs at once). Each holds at most one
 * pooled database connection.
 */
export const INBOUND_BATCHES_IN_FLIGHT = 2;

/**
 * Raw bytes one transaction reads into memory at most. The rows of a batch
 * are read whole (and pg hands bytea over as a hex string twice their size)
 * while they are parsed: thirty-two 25 MB messages at once would need more
 * than a gigabyte. A larger batch is decided in several transactions, in id
 * order; a message larger than this goes alone.
 */
export const MAX_BATCH_BYTES = 64 * 2 ** 20;

/** Consecutive groups of ids whose stored sizes add up to at most MAX_BATCH_BYTES (a larger one alone). */
export function byteBoundedGroups(rows: Array<{ id: number; size: number }>, limit = MAX_BATCH_BYTES): number[][] {
  const groups: number[][] = [];
  let bytes = Infinity;
  for (const r of rows) {
    if (bytes + r.size > limit) {
      groups.push([]);
      bytes = 0;
    }
    groups[groups.length - 1]!.push(r.id);
    bytes += r.size;
  }
  return groups;
}

/** Unexpected errors are retried; after this many runs the message is held instead of retried forever. */
export const MAX_PROCESSING_ATTEMPTS = 5;

export type Settled<R> = PromiseSettledResult<R>;

export async function processInboundBatch(ctx: AppContext, ids: number[]): Promise<Map<number, InboundResult>> {
  const results = new Map<number, InboundResult>();
  const rows = await findReceivedRows(ctx.db, ids);
  const parsed = await Promise.all(rows.map(async (row) => ({ row, parsed: await parseInbound(ctx, row) })));

  const outboxIds: number[] = [];
  const requeue: number[] = [];
  if (parsed.length > 0) {
    await ctx.db.transaction().execute(async (trx) => {
      const locked = await lockReceivedRows(
        trx,
        rows.map((r) => r.id),
      );
      const live = parsed
        .filter((p) => locked.has(p.row.id))
        .map((p) => ({ row: { ...p.row, release_overrides: locked.get(p.row.id)! }, parsed: p.parsed }));
      for (const [id, outcome] of await decideAndApply(ctx, trx, live)) {
        outboxIds.push(...(outcome.status === 'processed' ? outcome.outboxIds : outcome.held.outboxIds));
        if (outcome.status === 'processed') requeue.push(...(outcome.requeue ?? []));
        results.set(id, result(id, outcome));
      }
    });
  }
  // Counted once committed: a batch that rolls back is counted by the one-by-one retry instead.
  ctx.metrics.inboundProcessed.inc({ path: 'rules' }, results.size);
  await enqueueOutboundAfterCommit(ctx, outboxIds);
  if (requeue.length) await requeueInbound(ctx, requeue);
  for (const id of ids) if (!results.has(id)) results.set(id, result(id, null));
  return results;
}

/**
 * A failed run of one row: counted in the row, outside the transaction that
 * rolled back. Below the limit the error stands (the job is retried); at the
 * limit the row is held as `processing_error` and that is its result.
 */
async function countFailure(ctx: AppContext, inboundId: number, err: unknown): Promise<InboundResult | null> {
  const attempts = await countProcessingAttempt(ctx.db, inboundId).catch(() => null);
  if (attempts === null || attempts < MAX_PROCESSING_ATTEMPTS) return null;
  const message = (err instanceof Error ? err.message : String(err)).slice(0, 2000);
  ctx.log.error({ inboundId, err: message, attempts }, 'inbound processing keeps failing; holding the message');
  const outcome = await ctx.db.transaction().execute(async (trx) => {
    if (!(await lockReceivedRows(trx, [inboundId])).has(inboundId)) return null;
    const failed: Outcome = { status: 'held', held: held('processing_error', message) };
    await markInboundDecided(trx, [decision(inboundId, failed, null)]);
    return failed;
  });
  return result(inboundId, outcome);
}

async function processAlone(ctx: AppContext, inboundId: number): Promise<Settled<InboundResult>> {
  try {
    return { status: 'fulfilled', value: (await processInboundBatch(ctx, [inboundId])).get(inboundId)! };
  } catch (err) {
    const counted = await countFailure(ctx, inboundId, err);
    return counted ? { status: 'fulfilled', value: counted } : { status: 'rejected', reason: err };
  }
}

/**
 * The rows of one job: one batch, or, when the batch as a whole fails, each
 * row alone. One at a time also keeps the fallback from taking every pooled
 * connection from the SMTP accept path.
 */
export async function processInbound(ctx: AppContext, ids: number[]): Promise<Map<number, Settled<InboundResult>>> {
  const unique = [...new Set(ids)];
  const settled = new Map<number, Settled<InboundResult>>();
  if (unique.length > 1) {
    for (const group of byteBoundedGroups(await findReceivedSizes(ctx.db, unique)))
      for (const [id, r] of await processGroup(ctx, group)) settled.set(id, r);
    // Rows no longer `received` (done by an earlier run) are skipped, as a batch would.
    for (const id of unique) if (!settled.has(id)) settled.set(id, { status: 'fulfilled', value: result(id, null) });
    return settled;
  }
  for (const id of unique) settled.set(id, await processAlone(ctx, id));
  return settled;
}

async function processGroup(ctx: AppContext, ids: number[]): Promise<Map<number, Settled<InboundResult>>> {
  const settled = new Map<number, Settled<InboundResult>>();
  if (ids.length > 1) {
    try {
      for (const [id, r] of await processInboundBatch(ctx, ids)) settled.set(id, { status: 'fulfilled', value: r });
      return settled;
    } catch (err) {
      ctx.log.warn({ err: String(err), inboundIds: ids }, 'inbound batch failed; processing its messages one by one');
    }
  }
  for (const id of ids) settled.set(id, await processAlone(ctx, id));
  return settled;
}

/** One row, as `held release` and tests run it: a batch of one; throws that row's error. */
export async function processInboundMessage(ctx: AppContext, inboundId: number): Promise<InboundResult> {
  const r = (await processInbound(ctx, [inboundId])).get(inboundId)!;
  if (r.status === 'rejected') throw r.reason;
  return r.value;
}
