import { defineBatchJob, RetryLaterError } from './define-job.js';
import { processInboundContract } from './enqueue-inbound.js';
import { processInbound } from './inbound/batch.js';
import type { InboundResult } from './inbound/pipeline.js';

/** A job's result: how many of its rows ended how; a row that failed fails the job (its batch-mates stay done). */
function jobResult(ids: number[], settled: Map<number, PromiseSettledResult<InboundResult>>): PromiseSettledResult<unknown> {
  const mine = [...new Set(ids)].map((id) => [id, settled.get(id)!] as const);
  const failed = mine.filter(([, r]) => r.status === 'rejected') as Array<readonly [number, PromiseRejectedResult]>;
  if (failed.length > 0) {
    const [id, first] = failed[0]!;
    const why = first.reason instanceof Error ? first.reason.message : String(first.reason);
    return {
      status: 'rejected',
      reason: new RetryLaterError(`${failed.length} of ${mine.length} messages failed (message ${id}: ${why})`),
    };
  }
  const counts: Record<string, number> = {};
  for (const [, r] of mine) if (r.status === 'fulfilled') counts[r.value.status] = (counts[r.value.status] ?? 0) + 1;
  return { status: 'fulfilled', value: counts };
}

export const processInboundJob = defineBatchJob({
  ...processInboundContract,
  /**
   * The rows of the accept commits taken together, decided in one batch
   * (inbound/batch.ts). A row that failed has its attempt counted in the
   * database; its job is retried for it, and its batch-mates, already done,
   * are skipped on the retry.
   */
  runTogether: async (ctx, payloads) => {
    const settled = await processInbound(
      ctx,
      payloads.flatMap((p) => p.ids),
    );
    return payloads.map((p) => jobResult(p.ids, settled));
  },
});
