import type { JobDefinition, QueueName } from './define-job.js';
import { lifecycleJob } from './lifecycle.js';
import { processInboundJob } from './process-inbound.js';
import { sendMailJob } from './send-mail.js';
import { staffDigestJob } from './staff-digest.js';

/** Every job this worker can run, by queue. Add new definitions here. */
export const JOBS: readonly JobDefinition[] = [processInboundJob, sendMailJob, lifecycleJob, staffDigestJob] as JobDefinition[];

export function jobsForQueue(queue: QueueName): Map<string, JobDefinition> {
  return new Map(JOBS.filter((j) => j.queue === queue).map((j) => [j.name, j]));
}
