import { z } from 'zod';
import type { AppContext } from '../context.js';
import { defineJob, enqueue } from './define-job.js';
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
