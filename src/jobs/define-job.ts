import type { JobsOptions, Queue } from 'bullmq';
import { UnrecoverableError } from 'bullmq';
import type { z } from 'zod';
import type { AppContext } from '../context.js';
import { AppError } from '../errors.js';
import { withTimeout } from '../timeout.js';

export type QueueName = 'inbound' | 'outbound';

/**
 * What producers need of a job: its name, queue and payload schema. Kept
 * apart from the handler so that enqueueing a job never imports the code
 * that runs it (the SMTP edge does not load the processing pipeline).
 */
export interface JobContract<S extends z.ZodType = z.ZodType> {
  name: string;
  queue: QueueName;
  schema: S;
  options?: JobsOptions;
}

/**
 * One job = one name, one payload schema, one handler (the Documenso jobs
 * pattern). The worker may hand it several jobs of its name at once
 * (src/jobs/batch-worker.ts): `runTogether` settles each of them, in order.
 */
export interface JobDefinition<S extends z.ZodType = z.ZodType> extends JobContract<S> {
  /** One job alone. */
  handler(ctx: AppContext, data: z.output<S>): Promise<unknown>;
  runTogether(ctx: AppContext, payloads: Array<z.output<S>>): Promise<Array<PromiseSettledResult<unknown>>>;
}

const fulfilled = (value: unknown): PromiseSettledResult<unknown> => ({ status: 'fulfilled', value });
const rejected = (reason: unknown): PromiseSettledResult<unknown> => ({ status: 'rejected', reason });

/** A job whose runs share nothing: jobs taken together run one after another. */
export function defineJob<S extends z.ZodType>(
  def: JobContract<S> & { handler(ctx: AppContext, data: z.output<S>): Promise<unknown> },
): JobDefinition<S> {
  return {
    ...def,
    async runTogether(ctx, payloads) {
      const settled: Array<PromiseSettledResult<unknown>> = [];
      for (const data of payloads) settled.push(await def.handler(ctx, data).then(fulfilled, rejected));
      return settled;
    },
  };
}

/** A job whose runs are one unit of work when taken together (the rows of several commits, one transaction). */
export function defineBatchJob<S extends z.ZodType>(def: JobContract<S> & Pick<JobDefinition<S>, 'runTogether'>): JobDefinition<S> {
  return {
    ...def,
    async handler(ctx, data) {
      const [settled] = await def.runTogether(ctx, [data]);
      if (settled!.status === 'rejected') throw settled!.reason;
      return settled!.value;
    },
  };
}

/**
 * A failure the job expects to pass (the relay said 4xx, another worker holds
 * the row): retried with backoff like any error, logged without alarm. The
 * other retry class is BullMQ's UnrecoverableError: never retried.
 */
export class RetryLaterError extends Error {
  override name = 'RetryLaterError';
}

/** Validates a payload; in the worker an invalid one is permanent, retrying cannot fix it. */
export function parsePayload<S extends z.ZodType>(def: JobContract<S>, data: unknown, inWorker: boolean): z.output<S> {
  const result = def.schema.safeParse(data);
  if (result.success) return result.data;
  const message = `invalid payload for job ${def.name}: ${result.error.message}`;
  if (inWorker) throw new UnrecoverableError(message);
  throw new AppError('JOB_PAYLOAD_INVALID', message);
}

/**
 * BullMQ's add() first waits for its connection to be ready, forever, when
 * Redis has been down since start. Callers (the SMTP edge, the portal, the
 * sweepers) must never wait on Redis: rows are the truth and a later sweep
 * enqueues again. A late add that still lands is harmless (same job id).
 */
export const ENQUEUE_TIMEOUT_MS = 3_000;

/** Redis calls a producer must never wait on: fail at once when not connected, give up after the timeout. */
export function guarded<T>(ctx: Pick<AppContext, 'redis'>, what: string, run: () => Promise<T>): Promise<T> {
  if (ctx.redis.status !== 'ready') return Promise.reject(new Error(`${what}: Redis not ready (${ctx.redis.status})`));
  return withTimeout(run(), ENQUEUE_TIMEOUT_MS, `${what} (Redis unreachable?)`);
}

/** Enqueues a job after validating its payload. Throws while Redis is unreachable (producers never buffer). */
export async function enqueue<S extends z.ZodType>(
  ctx: Pick<AppContext, 'queues' | 'redis'>,
  def: JobContract<S>,
  data: z.input<S>,
  options: JobsOptions = {},
): Promise<void> {
  const payload = parsePayload(def, data, false);
  await guarded(ctx, `enqueue ${def.name}`, () => ctx.queues[def.queue].add(def.name, payload, { ...def.options, ...options }));
}

/**
 * A row still pending whose job already *finished* would never run again:
 * BullMQ ignores add() for an existing job id. That happens when a job
 * stalled more often than maxStalledCount (repeated kill -9), ran out of
 * attempts during an outage, or finished before `#send` put its row back to
 * `received`. The finished job is removed so the add() that follows, with
 * the ids the caller has now, takes effect.
 */
export async function removeFinishedJob(ctx: Pick<AppContext, 'redis'>, queue: Queue, jobId: string): Promise<void> {
  const remove = async () => {
    const job = await queue.getJob(jobId);
    if (!job) return;
    const state = await job.getState();
    if (state === 'failed' || state === 'completed') await job.remove();
  };
  await guarded(ctx, `checking job ${jobId}`, remove);
}

/**
 * The jobs for rows one transaction committed: `{ ids }` of up to `max` rows
 * each (a job is one unit of work, one transaction), all added in one Redis
 * round trip. A job's id is derived from its first row, so the sweeper
 * re-enqueueing the same rows while their job still waits adds nothing.
 * Throws while Redis is unreachable; the rows stay for the sweeper.
 */
export async function enqueueRows<S extends z.ZodType>(
  ctx: Pick<AppContext, 'queues' | 'redis'>,
  def: JobContract<S>,
  ids: number[],
  how: { max: number; jobId(firstId: number): string; options?: JobsOptions; replaceFinished?: boolean },
): Promise<void> {
  const chunks: number[][] = [];
  for (let i = 0; i < ids.length; i += how.max) chunks.push(ids.slice(i, i + how.max));
  if (chunks.length === 0) return;
  if (how.replaceFinished) for (const c of chunks) await removeFinishedJob(ctx, ctx.queues[def.queue], how.jobId(c[0]!));
  const jobs = chunks.map((c) => ({
    name: def.name,
    data: parsePayload(def, { ids: c }, false),
    opts: { ...def.options, ...how.options, jobId: how.jobId(c[0]!) },
  }));
  await guarded(ctx, `enqueue ${jobs.length} × ${def.name}`, () => ctx.queues[def.queue].addBulk(jobs));
}
