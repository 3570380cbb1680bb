import type { AppContext } from '../context.js';
import { findStaleReceivedIds } from '../db/queries/inbound-messages.js';
import { findQueuedOutboundIds } from '../db/queries/outbound-mails.js';
import { BatchWorker } from './batch-worker.js';
import { scheduleLifecycle } from './lifecycle.js';
import { scheduleStaffDigest } from './staff-digest.js';
import { enqueueInbound } from './enqueue-inbound.js';
import { INBOUND_BATCHES_IN_FLIGHT } from './inbound/batch.js';
import { OUTBOUND_BATCHES_IN_FLIGHT } from './outbound/deliver-batch.js';
import { enqueueOutbound } from './send-mail.js';

export interface WorkerSet {
  /** Runs both sweeps once; the interval timer calls it too. Returns how many rows were re-enqueued. */
  sweep(): Promise<{ inbound: number; outbound: number }>;
  close(): Promise<void>;
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
  const workers = [
    new BatchWorker(ctx, 'inbound', { batches: INBOUND_BATCHES_IN_FLIGHT, rows: ctx.config.INBOUND_CONCURRENCY }),
    // A batch is one send per relay connection; the batches in flight bound the crash window too:
    // at most this many mails were sent but not yet marked.
    new BatchWorker(ctx, 'outbound', { batches: OUTBOUND_BATCHES_IN_FLIGHT, rows: ctx.config.OUTBOUND_CONCURRENCY }),
  ];
  for (const w of workers) w.start();
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
    sweep,
    async close() {
      clearInterval(timer);
      await Promise.all([sweeping, scheduling]);
      // Each finishes the batches in hand before it disconnects.
      await Promise.all(workers.map((w) => w.close()));
    },
  };
}
