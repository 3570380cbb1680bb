import { z } from 'zod';
import type { AppContext } from '../context.js';
import { enqueue, reviveFinishedJob, type JobContract } from './define-job.js';
import { inboundJobId } from './job-ids.js';

/** The process-inbound job as producers see it; its handler is in process-inbound.ts. */
export const processInboundContract = {
  name: 'process-inbound',
  queue: 'inbound',
  schema: z.object({ inboundId: z.number().int().positive() }),
} as const satisfies JobContract;

export function enqueueInbound(ctx: Pick<AppContext, 'queues' | 'redis' | 'installationId'>, inboundId: number): Promise<void> {
  return enqueue(ctx, processInboundContract, { inboundId }, { jobId: inboundJobId(ctx, inboundId) });
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
