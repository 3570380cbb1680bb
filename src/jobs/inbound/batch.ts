import type { AppContext } from '../../context.js';
import { enqueueOutboundAll } from '../send-mail.js';
import type { AnalyzedMessage } from './analyze.js';
import { isPlainFirstMail, writePlainFirstMails, type Candidate } from './bulk-tickets.js';
import { ParseFailedError } from './parse-pool.js';
import { decideLocked, parseInbound, processInboundMessage, result, type InboundResult } from './pipeline.js';

/**
 * Group processing for process-inbound jobs. Each job still stands for one
 * message and resolves with that message's own result, but jobs that arrive
 * while earlier ones are being processed share the next batch: one read of
 * their rows, parsing in parallel, one transaction. Inside it the plain
 * first mails are written set-wise (bulk-tickets.ts) and every other
 * message runs the per-message rules. Like the accept batcher, nothing waits
 * on a timer: a lone job runs at once.
 *
 * If a batch fails, its messages are retried one by one (processInboundJobs):
 * one bad message never fails its neighbours.
 */

interface Pending {
  id: number;
  resolve(r: InboundResult): void;
  reject(err: unknown): void;
}

/** Two batches in flight: one can parse while the other writes. */
const MAX_IN_FLIGHT = 2;

const ROW_COLUMNS = ['id', 'raw', 'mail_from', 'rcpt_to', 'client_address', 'helo', 'release_overrides'] as const;

export async function processInboundBatch(ctx: AppContext, ids: number[]): Promise<Map<number, InboundResult>> {
  const results = new Map<number, InboundResult>();
  // Parse before locking: the rows are re-checked under the lock, and a row taken meanwhile is skipped.
  const rows = await ctx.db.selectFrom('inbound_messages').select(ROW_COLUMNS).where('id', 'in', ids).where('status', '=', 'received').execute();
  const parsed = await Promise.all(rows.map(async (row) => ({ row, parsed: await parseInbound(ctx, row) })));

  const outboxIds: number[] = [];
  if (parsed.length > 0) {
    await ctx.db.transaction().execute(async (trx) => {
      // Sorted, so two batches that share a row (a stalled job redelivered) wait for each other instead of deadlocking.
      const locked = await trx
        .selectFrom('inbound_messages')
        .select('id')
        .where('id', 'in', rows.map((r) => r.id))
        .where('status', '=', 'received')
        .orderBy('id')
        .forUpdate()
        .execute();
      const lockedIds = new Set(locked.map((r) => r.id));
      const live = parsed.filter((p) => lockedIds.has(p.row.id));
      const plain: Candidate[] = [];
      for (const p of live) {
        if (!(p.parsed instanceof ParseFailedError) && isPlainFirstMail(ctx.config, p.row, p.parsed)) plain.push({ row: p.row, a: p.parsed });
      }
      const bulk = await writePlainFirstMails(trx, ctx.config, plain);
      ctx.metrics.inboundProcessed.inc({ path: 'bulk' }, bulk.tickets.size);
      outboxIds.push(...bulk.outboxIds);
      for (const [inboundId, ticketId] of bulk.tickets) results.set(inboundId, { inboundId, status: 'processed', reason: null, ticketId });
      for (const p of live) {
        if (results.has(p.row.id)) continue;
        const outcome = await decideLocked(ctx, trx, p.row, p.parsed as AnalyzedMessage | ParseFailedError);
        if (outcome.status === 'processed') outboxIds.push(...outcome.outboxIds);
        results.set(p.row.id, result(p.row.id, outcome));
      }
    });
  }
  await enqueueOutboundAll(ctx, outboxIds);
  for (const id of ids) if (!results.has(id)) results.set(id, result(id, null));
  return results;
}

export class InboundBatcher {
  private queue: Pending[] = [];
  private running = 0;

  constructor(
    private readonly ctx: AppContext,
    private readonly maxBatch: number,
  ) {}

  process(inboundId: number): Promise<InboundResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ id: inboundId, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < MAX_IN_FLIGHT && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.running++;
      void this.run(batch).finally(() => {
        this.running--;
        this.pump();
      });
    }
  }

  private async run(batch: Pending[]): Promise<void> {
    const settled = await processInboundJobs(this.ctx, batch.map((p) => p.id));
    for (const p of batch) {
      const r = settled.get(p.id)!;
      if (r.status === 'fulfilled') p.resolve(r.value);
      else p.reject(r.reason);
    }
  }
}

/**
 * The messages of jobs that run together: one batch, or, when the batch as a
 * whole fails, one at a time on the per-message path, which counts attempts
 * and holds a message that keeps failing. One at a time also keeps the
 * fallback from taking every pooled connection from the SMTP accept path.
 */
export async function processInboundJobs(ctx: AppContext, ids: number[]): Promise<Map<number, PromiseSettledResult<InboundResult>>> {
  const unique = [...new Set(ids)];
  const settled = new Map<number, PromiseSettledResult<InboundResult>>();
  const one = async (id: number) => {
    settled.set(id, await processInboundMessage(ctx, id).then((value) => ({ status: 'fulfilled', value }) as const, (reason: unknown) => ({ status: 'rejected', reason }) as const));
  };
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

const batchers = new WeakMap<AppContext, InboundBatcher>();

/** The process's batcher for this context; a batch is at most INBOUND_CONCURRENCY jobs, the jobs BullMQ runs at once. */
export function inboundBatcher(ctx: AppContext): InboundBatcher {
  let b = batchers.get(ctx);
  if (!b) {
    b = new InboundBatcher(ctx, ctx.config.INBOUND_CONCURRENCY);
    batchers.set(ctx, b);
  }
  return b;
}
