import { z } from 'zod';
import type { AppContext } from '../context.js';
import { defineJob, enqueue, enqueueBulk } from './define-job.js';
import { outboundJobId } from './job-ids.js';
import { outboundBatcher } from './outbound/deliver-batch.js';

export const sendMailJob = defineJob({
  name: 'send-mail',
  queue: 'outbound',
  schema: z.object({ outboundId: z.number().int().positive() }),
  options: { attempts: 12, backoff: { type: 'exponential', delay: 5_000 } },
  // Jobs running at the same time share one transaction (outbound/deliver-batch.ts); each keeps its own outcome.
  handler: (ctx, data) => outboundBatcher(ctx).process(data.outboundId),
});

const jobOptions = (config: Pick<AppContext['config'], 'OUTBOUND_RETRY_BASE_MS'>, outboundId: number) => ({
  jobId: outboundJobId(outboundId),
  backoff: { type: 'exponential', delay: config.OUTBOUND_RETRY_BASE_MS },
});

export function enqueueOutbound(ctx: Pick<AppContext, 'queues' | 'redis' | 'config'>, outboundId: number): Promise<void> {
  return enqueue(ctx, sendMailJob, { outboundId }, jobOptions(ctx.config, outboundId));
}

/** After a transaction commits its outbox rows: one Redis round trip, best effort, the sweeper covers failures. */
export async function enqueueOutboundAll(ctx: Pick<AppContext, 'queues' | 'redis' | 'log' | 'config'>, ids: number[]): Promise<void> {
  if (ids.length === 0) return;
  const items = ids.map((outboundId) => ({ data: { outboundId }, options: jobOptions(ctx.config, outboundId) }));
  await enqueueBulk(ctx, sendMailJob, items).catch((err) => ctx.log.warn({ err: String(err), outboundIds: ids }, 'enqueue failed; sweeper will retry'));
}
