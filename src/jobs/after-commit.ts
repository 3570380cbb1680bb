import type { AppContext } from '../context.js';
import { enqueueOutboundAfterCommit } from './send-mail.js';
import { withTimeout } from '../timeout.js';

/** How long a page waits for Redis to take the jobs before answering anyway. */
const ENQUEUE_WAIT_MS = 1_000;

/**
 * Enqueues send-mail jobs for outbox rows a portal transaction just committed.
 * The rows are already safe in PostgreSQL and the worker's sweeper sends any
 * row that never got a job, so a visitor waits at most ENQUEUE_WAIT_MS on a
 * slow Redis (a Redis that is down fails at once inside enqueue).
 */
export async function enqueueAfterCommit(ctx: AppContext, outboxIds: number[]): Promise<void> {
  if (outboxIds.length === 0) return;
  await withTimeout(enqueueOutboundAfterCommit(ctx, outboxIds), ENQUEUE_WAIT_MS, 'portal enqueue').catch(() =>
    ctx.log.warn({ outboxIds }, 'enqueue slow; outbox rows left for the sweeper'),
  );
}
