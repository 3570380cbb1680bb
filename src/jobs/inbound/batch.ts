import type { AppContext } from '../../context.js';
import { batcherFor, JobBatcher, settleInto, type Settled } from '../job-batcher.js';
import { requeueInbound } from '../enqueue-inbound.js';
import { enqueueOutboundAll } from '../send-mail.js';
import { decideAndApply } from './route-batch.js';
import { parseInbound, processInboundMessage, result, ROW_COLUMNS, type InboundResult } from './pipeline.js';

/**
 * The inbound side of the job batcher (../job-batcher.ts): the messages of
 * jobs that run together are read in one query, parsed in parallel, and
 * decided in one transaction (route-batch.ts: set-wise facts, pure rules,
 * set-wise writes). If a batch fails, its messages are retried one by one
 * (processInboundJobs): one bad message never fails its neighbours.
 */

export async function processInboundBatch(ctx: AppContext, ids: number[]): Promise<Map<number, InboundResult>> {
  const results = new Map<number, InboundResult>();
  // Parse before locking: the rows are re-checked under the lock, and a row taken meanwhile is skipped.
  const rows = await ctx.db
    .selectFrom('inbound_messages')
    .select(ROW_COLUMNS)
    .where('id', 'in', ids)
    .where('status', '=', 'received')
    .execute();
  const parsed = await Promise.all(rows.map(async (row) => ({ row, parsed: await parseInbound(ctx, row) })));

  const outboxIds: number[] = [];
  const requeue: number[] = [];
  if (parsed.length > 0) {
    await ctx.db.transaction().execute(async (trx) => {
      // Sorted, so two batches that share a row (a stalled job redelivered) wait for each other instead of deadlocking.
      const locked = await trx
        .selectFrom('inbound_messages')
        .select('id')
        .where(
          'id',
          'in',
          rows.map((r) => r.id),
        )
        .where('status', '=', 'received')
        .orderBy('id')
        .forUpdate()
        .execute();
      const lockedIds = new Set(locked.map((r) => r.id));
      const live = parsed.filter((p) => lockedIds.has(p.row.id));
      for (const [id, outcome] of await decideAndApply(ctx, trx, live)) {
        outboxIds.push(...(outcome.status === 'processed' ? outcome.outboxIds : outcome.held.outboxIds));
        if (outcome.status === 'processed') requeue.push(...(outcome.requeue ?? []));
        results.set(id, result(id, outcome));
      }
    });
  }
  // Counted once committed: a batch that rolls back is counted by the one-by-one retry instead.
  ctx.metrics.inboundProcessed.inc({ path: 'rules' }, results.size);
  await enqueueOutboundAll(ctx, outboxIds);
  if (requeue.length) await requeueInbound(ctx, requeue);
  for (const id of ids) if (!results.has(id)) results.set(id, result(id, null));
  return results;
}

/**
 * The messages of jobs that run together: one batch, or, when the batch as a
 * whole fails, one at a time on the per-message path, which counts attempts
 * and holds a message that keeps failing. One at a time also keeps the
 * fallback from taking every pooled connection from the SMTP accept path.
 */
export async function processInboundJobs(ctx: AppContext, ids: number[]): Promise<Map<number, Settled<InboundResult>>> {
  const unique = [...new Set(ids)];
  const settled = new Map<number, Settled<InboundResult>>();
  const one = (id: number) => settleInto(settled, id, processInboundMessage(ctx, id));
  if (unique.length === 1) {
    await one(unique[0]!);
    return settled;
  }
  try {
    for (const [id, r] of await processInboundBatch(ctx, unique)) settled.set(id, { status: 'fulfilled', value: r });
    ctx.log.debug({ messages: unique.length }, 'inbound batch processed');
  } catch (err) {
    ctx.log.warn({ err: String(err), inboundIds: unique }, 'inbound batch failed; processing its messages one by one');
    for (const id of unique) await one(id);
  }
  return settled;
}

const batchers = new WeakMap<AppContext, JobBatcher<InboundResult>>();

/** Two batches at once: one parses while the other writes. */
export const INBOUND_BATCHES_IN_FLIGHT = 2;

/** The process's batcher for this context; a batch is at most INBOUND_CONCURRENCY jobs, the jobs BullMQ runs at once. */
export function inboundBatcher(ctx: AppContext): JobBatcher<InboundResult> {
  return batcherFor(
    batchers,
    ctx,
    () => new JobBatcher((ids) => processInboundJobs(ctx, ids), ctx.config.INBOUND_CONCURRENCY, INBOUND_BATCHES_IN_FLIGHT),
  );
}
