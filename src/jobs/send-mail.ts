import { UnrecoverableError } from 'bullmq';
import { z } from 'zod';
import type { AppContext } from '../context.js';
import { defineBatchJob, enqueueRows, RetryLaterError } from './define-job.js';
import { outboundJobId } from './job-ids.js';
import { deliverOutbound } from './outbound/deliver-batch.js';
import { OUTBOUND_MAX_ATTEMPTS, settleOutcome, type DeliveryOutcome } from './outbound/deliver.js';

/**
 * The send-mail job: the outbox rows of one commit, at most
 * OUTBOUND_CONCURRENCY of them (one delivery transaction, one send per relay
 * connection). Each row keeps its own outcome and attempt count in the
 * database; the job is retried with backoff while any row waits for a retry,
 * and rows already sent are skipped on the retry.
 */
/** A job's result from its rows' outcomes: retried while any waits for a retry, failed for good once all are settled. */
function jobResult(ctx: AppContext, ids: number[], outcomes: Map<number, DeliveryOutcome>): PromiseSettledResult<unknown> {
  const mine = [...new Set(ids)];
  const retry: string[] = [];
  const permanent: string[] = [];
  for (const id of mine) {
    try {
      settleOutcome(ctx, id, outcomes.get(id)!);
    } catch (err) {
      (err instanceof UnrecoverableError ? permanent : retry).push((err as Error).message);
    }
  }
  if (retry.length > 0)
    return { status: 'rejected', reason: new RetryLaterError(`${retry.length} of ${mine.length} mails to retry: ${retry[0]}`) };
  // Every other row is settled; the failed ones are failed in the database too (`requeue` resets them).
  if (permanent.length > 0)
    return { status: 'rejected', reason: new UnrecoverableError(`${permanent.length} of ${mine.length} mails failed: ${permanent[0]}`) };
  return { status: 'fulfilled', value: { mails: mine.length } };
}

/**
 * The send-mail job: the outbox rows of one commit, at most
 * OUTBOUND_CONCURRENCY of them. Jobs taken together share one delivery
 * transaction (outbound/deliver-batch.ts). Each row keeps its own outcome
 * and attempt count in the database; a job is retried with backoff while
 * any of its rows waits for a retry, and rows already sent are skipped on
 * the retry.
 */
export const sendMailJob = defineBatchJob({
  name: 'send-mail',
  queue: 'outbound',
  schema: z.object({ ids: z.array(z.number().int().positive()).min(1).max(256) }),
  options: { attempts: OUTBOUND_MAX_ATTEMPTS, backoff: { type: 'exponential', delay: 5_000 } },
  runTogether: async (ctx, payloads) => {
    const outcomes = await deliverOutbound(
      ctx,
      payloads.flatMap((p) => p.ids),
    );
    return payloads.map((p) => jobResult(ctx, p.ids, outcomes));
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
