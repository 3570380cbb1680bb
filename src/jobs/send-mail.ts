import { z } from 'zod';
import type { AppContext } from '../context.js';
import { defineJob, enqueue } from './define-job.js';
import { outboundJobId } from './job-ids.js';
import { deliverOutboundMail } from './outbound/deliver.js';

export const sendMailJob = defineJob({
  name: 'send-mail',
  queue: 'outbound',
  schema: z.object({ outboundId: z.number().int().positive() }),
  options: { attempts: 12, backoff: { type: 'exponential', delay: 5_000 } },
  handler: (ctx, data) => deliverOutboundMail(ctx, data.outboundId),
});

export function enqueueOutbound(ctx: Pick<AppContext, 'queues' | 'redis' | 'config'>, outboundId: number): Promise<void> {
  return enqueue(ctx, sendMailJob, { outboundId }, {
    jobId: outboundJobId(outboundId),
    backoff: { type: 'exponential', delay: ctx.config.OUTBOUND_RETRY_BASE_MS },
  });
}

/** After a transaction commits its outbox rows: best effort, the sweeper covers failures. */
export async function enqueueOutboundAll(ctx: Pick<AppContext, 'queues' | 'redis' | 'log' | 'config'>, ids: number[]): Promise<void> {
  await Promise.all(
    ids.map((id) =>
      enqueueOutbound(ctx, id).catch((err) => ctx.log.warn({ err: String(err), outboundId: id }, 'enqueue failed; sweeper will retry')),
    ),
  );
}
