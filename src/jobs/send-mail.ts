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

type EnqueueContext = Pick<AppContext, 'queues' | 'redis' | 'config' | 'installationId'>;

const jobOptions = (ctx: Pick<AppContext, 'config' | 'installationId'>, outboundId: number) => ({
  jobId: outboundJobId(ctx, outboundId),
  backoff: { type: 'exponential', delay: ctx.config.OUTBOUND_RETRY_BASE_MS },
});

export function enqueueOutbound(ctx: EnqueueContext, outboundId: number): Promise<void> {
  return enqueue(ctx, sendMailJob, { outboundId }, jobOptions(ctx, outboundId));
}

/** After a transaction commits its outbox rows: one Redis round trip, best effort, the sweeper covers failures. */
export async function enqueueOutboundAll(ctx: EnqueueContext & Pick<AppContext, 'log'>, ids: number[]): Promise<void> {
  if (ids.length === 0) return;
  const items = ids.map((outboundId) => ({ data: { outboundId }, options: jobOptions(ctx, outboundId) }));
  await enqueueBulk(ctx, sendMailJob, items).catch((err) =>
    ctx.log.warn({ err: String(err), outboundIds: ids }, 'enqueue failed; sweeper will retry'),
  );
}
