import { z } from 'zod';
import type { AppContext } from '../context.js';
import { enqueueRows, type JobContract } from './define-job.js';
import { inboundJobId } from './job-ids.js';

/**
 * The process-inbound job as producers see it; its handler is in
 * process-inbound.ts. One job carries the rows of one accept commit (at
 * most INBOUND_CONCURRENCY of them): the worker decides them together in
 * one transaction.
 */
export const processInboundContract = {
  name: 'process-inbound',
  queue: 'inbound',
  schema: z.object({ ids: z.array(z.number().int().positive()).min(1).max(256) }),
} as const satisfies JobContract;

type EnqueueContext = Pick<AppContext, 'queues' | 'redis' | 'config' | 'installationId'>;

/** Throws while Redis is unreachable: the rows are committed, the sweeper enqueues them later. */
export function enqueueInbound(ctx: EnqueueContext, ids: number[], replaceFinished = false): Promise<void> {
  return enqueueRows(ctx, processInboundContract, ids, {
    max: ctx.config.INBOUND_CONCURRENCY,
    jobId: (first) => inboundJobId(ctx, first),
    replaceFinished,
  });
}

/** After a commit of received rows: one Redis round trip, best effort (the sweeper covers a Redis outage). */
export async function enqueueInboundAfterCommit(ctx: EnqueueContext & Pick<AppContext, 'log'>, ids: number[]): Promise<void> {
  await enqueueInbound(ctx, ids).catch((err) => ctx.log.warn({ err: String(err), inboundIds: ids }, 'enqueue failed; sweeper will retry'));
}

/**
 * Runs rows that were processed (or held) once more: `#send` puts an agent's
 * held collision back to `received`. The job that ran them may have finished
 * under the same id, so it is replaced. A failure here is only a delay: the
 * sweeper picks up `received` rows.
 */
export async function requeueInbound(ctx: EnqueueContext & Pick<AppContext, 'log'>, ids: number[]): Promise<void> {
  await enqueueInbound(ctx, ids, true).catch((err) =>
    ctx.log.warn({ inboundIds: ids, err: String(err) }, 'could not requeue released messages; the sweeper will'),
  );
}
