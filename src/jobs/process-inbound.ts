import { defineJob, RetryLaterError } from './define-job.js';
import { processInboundContract } from './enqueue-inbound.js';
import { processInbound } from './inbound/batch.js';

export const processInboundJob = defineJob({
  ...processInboundContract,
  /**
   * The rows of one accept commit, decided together (inbound/batch.ts). A row
   * that failed has its attempt counted in the database; the job is retried
   * for it, and its batch-mates, already done, are skipped on the retry.
   */
  handler: async (ctx, data) => {
    const settled = await processInbound(ctx, data.ids);
    const failed = [...settled].filter(([, r]) => r.status === 'rejected') as Array<[number, PromiseRejectedResult]>;
    if (failed.length > 0) {
      const [id, first] = failed[0]!;
      const why = first.reason instanceof Error ? first.reason.message : String(first.reason);
      throw new RetryLaterError(`${failed.length} of ${settled.size} messages failed (message ${id}: ${why})`);
    }
    const counts: Record<string, number> = {};
    for (const r of settled.values()) if (r.status === 'fulfilled') counts[r.value.status] = (counts[r.value.status] ?? 0) + 1;
    return counts;
  },
});
