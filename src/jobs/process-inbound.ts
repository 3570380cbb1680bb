import { z } from 'zod';
import type { AppContext } from '../context.js';
import { defineJob, enqueue, reviveFinishedJob } from './define-job.js';
import { inboundJobId } from './job-ids.js';
import { inboundBatcher } from './inbound/batch.js';

export const processInboundJob = defineJob({
  name: 'process-inbound',
  queue: 'inbound',
  schema: z.object({ inboundId: z.number().int().positive() }),
  // Jobs running at the same time share one transaction (inbound/batch.ts); each still gets its own message's result.
  handler: (ctx, data) => inboundBatcher(ctx).process(data.inboundId),
});

export function enqueueInbound(ctx: Pick<AppContext, 'queues' | 'redis' | 'installationId'>, inboundId: number): Promise<void> {
  return enqueue(ctx, processInboundJob, { inboundId }, { jobId: inboundJobId(ctx, inboundId) });
}

/**
 * Runs rows that were processed (or held) once more: `#send` puts an agent's
 * held collision back to `received`. Their first job finished, and BullMQ
 * ignores add() for an id it still holds, so that job is removed first. A
 * failure here is only a delay: the sweeper picks up `received` rows.
 */
export async function requeueInbound(ctx: AppContext, inboundIds: number[]): Promise<void> {
  for (const id of inboundIds) {
    try {
      await reviveFinishedJob(ctx, ctx.queues.inbound, inboundJobId(ctx, id));
      await enqueueInbound(ctx, id);
    } catch (err) {
      ctx.log.warn({ inboundId: id, err: String(err) }, 'could not requeue a released message; the sweeper will');
    }
  }
}
