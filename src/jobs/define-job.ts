import type { Job, JobsOptions } from 'bullmq';
import { UnrecoverableError } from 'bullmq';
import type { z } from 'zod';
import type { AppContext } from '../context.js';
import { AppError } from '../errors.js';

export type QueueName = 'inbound' | 'outbound';

/** One job = one name, one payload schema, one handler (the Documenso jobs pattern). */
export interface JobDefinition<S extends z.ZodType = z.ZodType> {
  name: string;
  queue: QueueName;
  schema: S;
  options?: JobsOptions;
  handler(ctx: AppContext, data: z.output<S>, job: Job): Promise<unknown>;
}

export function defineJob<S extends z.ZodType>(def: JobDefinition<S>): JobDefinition<S> {
  return def;
}

/** Validates a payload; in the worker an invalid one is permanent, retrying cannot fix it. */
export function parsePayload<S extends z.ZodType>(def: JobDefinition<S>, data: unknown, inWorker: boolean): z.output<S> {
  const result = def.schema.safeParse(data);
  if (result.success) return result.data;
  const message = `invalid payload for job ${def.name}: ${result.error.message}`;
  if (inWorker) throw new UnrecoverableError(message);
  throw new AppError('JOB_PAYLOAD_INVALID', message);
}

/** Enqueues a job after validating its payload. Throws while Redis is unreachable (producers never buffer). */
export async function enqueue<S extends z.ZodType>(
  ctx: Pick<AppContext, 'queues'>,
  def: JobDefinition<S>,
  data: z.input<S>,
  options: JobsOptions = {},
): Promise<void> {
  const payload = parsePayload(def, data, false);
  await ctx.queues[def.queue].add(def.name, payload, { ...def.options, ...options });
}
