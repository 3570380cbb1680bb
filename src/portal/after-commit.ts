import type { AppContext } from '../context.js';
import { enqueueOutboundAll } from '../jobs/send-mail.js';

/** How long a page waits for Redis to take the jobs before answering anyway. */
const ENQUEUE_WAIT_MS = 1_000;

/**
 * Enqueues send-mail jobs for outbox rows a portal transaction just committed.
 * The rows are already safe in PostgreSQL and the worker's sweeper sends any
 * row that never got a job, so a visitor never waits on a Redis outage:
 * BullMQ's add() waits indefinitely for a connection that is not up, so we
 * skip it when Redis is not ready and cap the wait when it is.
 */
export async function enqueueAfterCommit(ctx: AppContext, outboxIds: number[]): Promise<void> {
  if (outboxIds.length === 0) return;
  if (ctx.redis.status !== 'ready') {
    ctx.log.warn({ outboxIds }, 'Redis not ready; outbox rows left for the sweeper');
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      ctx.log.warn({ outboxIds }, 'enqueue slow; outbox rows left for the sweeper');
      resolve();
    }, ENQUEUE_WAIT_MS);
  });
  await Promise.race([enqueueOutboundAll(ctx, outboxIds), timeout]).finally(() => clearTimeout(timer));
}
