import { z } from 'zod';
import type { AppContext } from '../context.js';
import { defineJob, enqueue } from './define-job.js';
import { inboundJobId } from './job-ids.js';
import { processInboundMessage } from './inbound/pipeline.js';

export const processInboundJob = defineJob({
  name: 'process-inbound',
  queue: 'inbound',
  schema: z.object({ inboundId: z.number().int().positive() }),
  handler: (ctx, data) => processInboundMessage(ctx, data.inboundId),
});

export function enqueueInbound(ctx: Pick<AppContext, 'queues' | 'redis'>, inboundId: number): Promise<void> {
  return enqueue(ctx, processInboundJob, { inboundId }, { jobId: inboundJobId(inboundId) });
}
