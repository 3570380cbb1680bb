import { randomUUID } from 'node:crypto';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { AppContext } from '../context.js';
import { createWorkerRedis } from '../redis.js';
import { parsePayload, type JobDefinition, type QueueName } from './define-job.js';
import { jobsForQueue } from './registry.js';

/**
 * A queue's worker that takes the jobs waiting when it asks as one unit of
 * work. The first job is awaited (BullMQ's blocking fetch); the jobs already
 * waiting behind it are taken without waiting, up to `rows` rows between
 * them. Jobs of one name are then handed to their definition together
 * (process-inbound decides all their rows in one transaction), and each job
 * is completed or failed on its own, with BullMQ's retry rules.
 *
 * Under a trickle every accept commit holds one message, so one job per
 * transaction would pay a transaction and a queue round trip per message;
 * taking what waits lets the batch grow with the load, with no timer. In a
 * burst the jobs are already large and a batch is one job.
 *
 * BullMQ's manual-processing API (getNextJob, moveToCompleted/moveToFailed,
 * extendJobLocks, startStalledCheckTimer) does the queue work: locks are
 * renewed for every job in hand, and a job whose worker died is moved back
 * by the stalled check as with an ordinary worker.
 */

export interface BatchLimits {
  /** Batches worked on at once: one can be parsing while another writes. */
  batches: number;
  /** Rows a batch may take, summed over its jobs (a scheduled job counts as one); the first job always fits. */
  rows: number;
}

const LOCK_DURATION_MS = 30_000;
const FETCH_RETRY_MS = [250, 1_000, 5_000] as const;

/** The rows a job carries ({ ids }); scheduled jobs count as one. */
function rowsOf(job: Job): number {
  const ids = (job.data as { ids?: unknown } | null)?.ids;
  return Array.isArray(ids) ? ids.length : 1;
}

interface Taken {
  job: Job;
  token: string;
}

export class BatchWorker {
  private readonly defs: Map<string, JobDefinition>;
  private readonly connection: Redis;
  private readonly worker: Worker;
  private readonly inFlight = new Set<Promise<void>>();
  private closing = false;
  private loop: Promise<void> = Promise.resolve();
  private wake: (() => void) | null = null;

  constructor(
    private readonly ctx: AppContext,
    private readonly queue: QueueName,
    private readonly limits: BatchLimits,
  ) {
    this.defs = jobsForQueue(queue);
    this.connection = createWorkerRedis(ctx.config.REDIS_URL);
    this.worker = new Worker(queue, null, {
      connection: this.connection,
      prefix: ctx.config.QUEUE_PREFIX,
      autorun: false,
      lockDuration: LOCK_DURATION_MS,
    });
    this.worker.on('error', (err) => ctx.log.error({ queue, err: err.message }, 'worker error'));
  }

  start(): void {
    void this.worker.startStalledCheckTimer();
    this.loop = this.fetchLoop();
  }

  /** Finishes the batches in hand (their jobs are completed or failed), then disconnects. */
  async close(): Promise<void> {
    this.closing = true;
    this.wake?.();
    await this.drain();
    // Forced: BullMQ tracks none of our jobs; this ends a blocking fetch at once.
    await this.worker.close(true);
    await this.loop;
    await this.drain();
    this.connection.disconnect();
  }

  private async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private async fetchLoop(): Promise<void> {
    let failures = 0;
    while (!this.closing) {
      if (this.inFlight.size >= this.limits.batches) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      let taken: Taken[];
      try {
        taken = await this.take();
        failures = 0;
      } catch (err) {
        // Redis unreachable: the rows are safe in PostgreSQL; try again a little later.
        this.ctx.log.warn({ queue: this.queue, err: String(err) }, 'could not fetch jobs; will retry');
        await this.pause(FETCH_RETRY_MS[Math.min(failures++, FETCH_RETRY_MS.length - 1)]!);
        continue;
      }
      if (taken.length === 0) continue;
      const run = this.runBatch(taken).finally(() => {
        this.inFlight.delete(run);
        this.wake?.();
      });
      this.inFlight.add(run);
    }
  }

  /** The first job (waiting for one), then whatever already waits, up to the row limit. */
  private async take(): Promise<Taken[]> {
    const first = await this.next(true);
    if (!first) return [];
    const taken = [first];
    let rows = rowsOf(first.job);
    while (!this.closing && rows < this.limits.rows) {
      // Once a job is in hand it is worked on: a failed look for more only ends the batch here.
      const more = await this.next(false).catch(() => null);
      if (!more) break;
      taken.push(more);
      rows += rowsOf(more.job);
    }
    return taken;
  }

  private async next(block: boolean): Promise<Taken | null> {
    const token = `${this.worker.id}:${randomUUID()}`;
    const job = await this.worker.getNextJob(token, { block });
    return job ? { job, token } : null;
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private async runBatch(taken: Taken[]): Promise<void> {
    const renew = setInterval(() => {
      this.worker
        .extendJobLocks(
          taken.map((t) => t.job.id!),
          taken.map((t) => t.token),
          LOCK_DURATION_MS,
        )
        .catch((err: unknown) => this.ctx.log.warn({ queue: this.queue, err: String(err) }, 'could not renew job locks'));
    }, LOCK_DURATION_MS / 2);
    const started = performance.now();
    try {
      const byName = new Map<string, Taken[]>();
      for (const t of taken) byName.set(t.job.name, [...(byName.get(t.job.name) ?? []), t]);
      for (const [name, group] of byName) await this.runGroup(name, group);
    } finally {
      clearInterval(renew);
      this.ctx.log.debug(
        {
          queue: this.queue,
          jobs: taken.length,
          rows: taken.reduce((n, t) => n + rowsOf(t.job), 0),
          ms: Math.round(performance.now() - started),
        },
        'batch done',
      );
    }
  }

  private async runGroup(name: string, group: Taken[]): Promise<void> {
    const def = this.defs.get(name);
    const end = this.ctx.metrics.jobDuration.startTimer({ queue: this.queue, job: name });
    // An invalid payload (or a name without a handler) fails its own job, never its batch-mates.
    const payloads = group.map((t): { data: unknown } | { error: unknown } => {
      try {
        if (!def) throw new UnrecoverableError(`no handler for job ${name} on queue ${this.queue}`);
        return { data: parsePayload(def, t.job.data, true) };
      } catch (error) {
        return { error };
      }
    });
    const valid = payloads.flatMap((p) => ('data' in p ? [p.data] : []));
    const results =
      def && valid.length > 0
        ? await def
            .runTogether(this.ctx, valid)
            .catch((reason: unknown) => valid.map((): PromiseSettledResult<unknown> => ({ status: 'rejected', reason })))
        : [];
    let next = 0;
    const settled = payloads.map((p): PromiseSettledResult<unknown> =>
      'data' in p ? results[next++]! : { status: 'rejected', reason: p.error },
    );
    await Promise.all(group.map((t, i) => this.settle(t, settled[i]!, end)));
  }

  private async settle(t: Taken, r: PromiseSettledResult<unknown>, end: (labels: { outcome: string }) => void): Promise<void> {
    try {
      if (r.status === 'fulfilled') {
        end({ outcome: 'ok' });
        await t.job.moveToCompleted(r.value, t.token, false);
        return;
      }
      const err = r.reason instanceof Error ? r.reason : new Error(String(r.reason));
      end({ outcome: err instanceof UnrecoverableError ? 'permanent_failure' : 'retry' });
      this.ctx.log.warn(
        { queue: this.queue, job: t.job.name, jobId: t.job.id, attempt: t.job.attemptsMade + 1, err: err.message },
        'job failed',
      );
      await t.job.moveToFailed(err, t.token, false);
    } catch (err) {
      // The lock was lost (the job stalled and runs elsewhere) or Redis is down: the stalled check
      // hands the job out again, and its rows are idempotent.
      this.ctx.log.warn({ queue: this.queue, jobId: t.job.id, err: String(err) }, 'could not record the job outcome');
    }
  }
}
