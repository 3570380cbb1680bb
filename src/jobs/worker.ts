import { UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { AppContext } from '../context.js';
import { findStaleReceivedIds } from '../db/queries/inbound-messages.js';
import { findQueuedOutboundIds } from '../db/queries/outbound-mails.js';
import { createWorkerRedis } from '../redis.js';
import { parsePayload, type QueueName } from './define-job.js';
import { scheduleLifecycle } from './lifecycle.js';
import { scheduleStaffDigest } from './staff-digest.js';
import { enqueueInbound } from './enqueue-inbound.js';
import { INBOUND_JOBS_IN_FLIGHT, INBOUND_ROWS_IN_FLIGHT } from './inbound/batch.js';
import { RowBudget } from './row-budget.js';
import { OUTBOUND_JOBS_IN_FLIGHT, OUTBOUND_ROWS_PER_CONNECTION } from './outbound/deliver-batch.js';
import { jobsForQueue } from './registry.js';
import { enqueueOutbound } from './send-mail.js';

export interface WorkerSet {
  workers: Worker[];
  /** Runs both sweeps once; the interval timer calls it too. Returns how many rows were re-enqueued. */
  sweep(): Promise<{ inbound: number; outbound: number }>;
  close(): Promise<void>;
}

/** The rows a job carries ({ ids }); scheduled jobs count as one. */
function rowsOf(data: unknown): number {
  const ids = (data as { ids?: unknown } | null)?.ids;
  return Array.isArray(ids) ? ids.length : 1;
}

function startQueueWorker(
  ctx: AppContext,
  queue: QueueName,
  concurrency: number,
  budget: RowBudget | null = null,
): { worker: Worker; connection: Redis } {
  const defs = jobsForQueue(queue);
  const connection = createWorkerRedis(ctx.config.REDIS_URL);
  const worker = new Worker(
    queue,
    async (job) => {
      const def = defs.get(job.name);
      if (!def) throw new UnrecoverableError(`no handler for job ${job.name} on queue ${queue}`);
      const run = async () => {
        const end = ctx.metrics.jobDuration.startTimer({ queue, job: job.name });
        try {
          const result = await def.handler(ctx, parsePayload(def, job.data, true), job);
          end({ outcome: 'ok' });
          return result;
        } catch (err) {
          end({ outcome: err instanceof UnrecoverableError ? 'permanent_failure' : 'retry' });
          throw err;
        }
      };
      return budget ? budget.run(rowsOf(job.data), run) : run();
    },
    { connection, prefix: ctx.config.QUEUE_PREFIX, concurrency, autorun: true },
  );
  worker.on('failed', (job, err) =>
    ctx.log.warn({ queue, job: job?.name, jobId: job?.id, attempt: job?.attemptsMade, err: err.message }, 'job failed'),
  );
  worker.on('error', (err) => ctx.log.error({ queue, err: err.message }, 'worker error'));
  return { worker, connection };
}

/**
 * Rows that never got a job (Redis was down at commit time) or whose job was
 * lost are picked up here, as the same kind of job a commit enqueues. Job
 * ids are derived from the first row, so a sweep that races a waiting job
 * adds nothing; the handlers are idempotent anyway.
 */
async function sweepOnce(ctx: AppContext): Promise<{ inbound: number; outbound: number }> {
  const graceStart = new Date(Date.now() - ctx.config.INBOUND_SWEEP_GRACE_MS);
  const inbound = await findStaleReceivedIds(ctx.db, graceStart, 500);
  if (inbound.length) await enqueueInbound(ctx, inbound, true);
  const outbound = await findQueuedOutboundIds(ctx.db, graceStart, 500);
  if (outbound.length) await enqueueOutbound(ctx, outbound, true);
  return { inbound: inbound.length, outbound: outbound.length };
}

export function startWorkers(ctx: AppContext, sweepIntervalMs = ctx.config.SWEEP_INTERVAL_MS): WorkerSet {
  const started = [
    startQueueWorker(ctx, 'inbound', INBOUND_JOBS_IN_FLIGHT, new RowBudget(INBOUND_ROWS_IN_FLIGHT)),
    // The row budget bounds the crash window too: at most this many mails were sent but not yet marked.
    startQueueWorker(
      ctx,
      'outbound',
      OUTBOUND_JOBS_IN_FLIGHT,
      new RowBudget(OUTBOUND_ROWS_PER_CONNECTION * ctx.config.OUTBOUND_CONCURRENCY),
    ),
  ];
  const workers = started.map((s) => s.worker);
  let sweeping: Promise<unknown> = Promise.resolve();
  // The schedules (lifecycle, staff digest) live in Redis; registering them is retried with each sweep until it succeeds.
  let scheduled = false;
  const schedule = () =>
    Promise.all([scheduleLifecycle(ctx), scheduleStaffDigest(ctx)]).then(
      () => void (scheduled = true),
      (err: unknown) => ctx.log.warn({ err: String(err) }, 'could not register the scheduled jobs; will retry'),
    );
  let scheduling = schedule();
  const sweep = () => {
    if (!scheduled) scheduling = schedule();
    const run = sweepOnce(ctx);
    sweeping = run.catch(() => {});
    return run;
  };
  const timer = setInterval(() => {
    sweep().catch((err) => ctx.log.warn({ err: String(err) }, 'sweep failed; will retry'));
  }, sweepIntervalMs);
  timer.unref();
  return {
    workers,
    sweep,
    async close() {
      clearInterval(timer);
      await Promise.all([sweeping, scheduling]);
      // Worker.close() waits for in-flight jobs to finish before resolving.
      await Promise.all(workers.map((w) => w.close()));
      // A connection we pass in is shared, so BullMQ leaves closing it to us.
      for (const s of started) s.connection.disconnect();
    },
  };
}
