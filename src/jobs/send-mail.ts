import { UnrecoverableError } from 'bullmq';
import { z } from 'zod';
import type { AppContext } from '../context.js';
import { defineJob, enqueueRows, RetryLaterError } from './define-job.js';
import { outboundJobId } from './job-ids.js';
import { deliverOutbound } from './outbound/deliver-batch.js';
import { OUTBOUND_MAX_ATTEMPTS, settleOutcome } from './outbound/deliver.js';

/**
 * The send-mail job: the outbox rows of one commit, at most
 * OUTBOUND_CONCURRENCY of them (one delivery transaction, one send per relay
 * connection). Each row keeps its own outcome and attempt count in the
 * database; the job is retried with backoff while any row waits for a retry,
 * and rows already sent are skipped on the retry.
 */
export const sendMailJob = defineJob({
  name: 'send-mail',
  queue: 'outbound',
  schema: z.object({ ids: z.array(z.number().int().positive()).min(1).max(256) }),
  options: { attempts: OUTBOUND_MAX_ATTEMPTS, backoff: { type: 'exponential', delay: 5_000 } },
  handler: async (ctx, data) => {
    const outcomes = await deliverOutbound(ctx, data.ids);
    const retry: string[] = [];
    const permanent: string[] = [];
    for (const [id, outcome] of outcomes) {
      try {
        settleOutcome(ctx, id, outcome);
      } catch (err) {
        (err instanceof UnrecoverableError ? permanent : retry).push((err as Error).message);
      }
    }
    if (retry.length > 0) throw new RetryLaterError(`${retry.length} of ${outcomes.size} mails to retry: ${retry[0]}`);
    // Every other row is settled; the failed ones are failed in the database too (`requeue` resets them).
    if (permanent.length > 0) throw new UnrecoverableError(`${permanent.length} of ${outcomes.size} mails failed: ${permanent[0]}`);
    return { mails: outcomes.size };
  },
});

type EnqueueContext = Pick<AppContext, 'queues' | 'redis' | 'config' | 'installationId'>;

/** Throws while Redis is unreachable: the rows are committed, the sweeper enqueues them later. */
export function enqueueOutbound(ctx: EnqueueContext, ids: number[], replaceFinished = false): Promise<void> {
  return enqueueRows(ctx, sendMailJob, ids, {
    max: ctx.config.OUTBOUND_CONCURRENCY,
    jobId: (first) => outboundJobId(ctx, first),
    options: { backoff: { type: 'exponential', delay: ctx.config.OUTBOUND_RETRY_BASE_MS } },
    replaceFinished,
  });
}

/** After a transaction commits its outbox rows: one Redis round trip, best effort, the sweeper covers failures. */
export async function enqueueOutboundAfterCommit(ctx: EnqueueContext & Pick<AppContext, 'log'>, ids: number[]): Promise<void> {
  if (ids.length === 0) return;
  await enqueueOutbound(ctx, ids).catch((err) =>
    ctx.log.warn({ err: String(err), outboundIds: ids }, 'enqueue failed; sweeper will retry'),
  );
}
