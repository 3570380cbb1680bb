import { defineJob } from './define-job.js';
import { processInboundContract } from './enqueue-inbound.js';
import { inboundBatcher } from './inbound/batch.js';

export const processInboundJob = defineJob({
  ...processInboundContract,
  // Jobs running at the same time share one transaction (inbound/batch.ts); each still gets its own message's result.
  handler: (ctx, data) => inboundBatcher(ctx).process(data.inboundId),
});
