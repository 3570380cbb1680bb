import { Queue } from 'bullmq';
import { requeueFailedInbound } from '../db/queries/inbound-messages.js';
import { requeueFailedOutbound } from '../db/queries/outbound-mails.js';
import { createProducerRedis, waitForReady } from '../redis.js';
import { parseCliArgs, positiveInt } from './args.js';
import type { CliCommand } from './types.js';

/**
 * Puts failed work back in line after the cause is fixed (a relay that
 * rejected mail for a while, a bug fixed in a new release). Rows are reset in
 * PostgreSQL; the running workers' sweepers pick them up, so this works even
 * while Redis is down. BullMQ's own failed jobs are retried too when Redis is up.
 */
export const requeueCommands: CliCommand[] = [
  {
    words: ['requeue'],
    usage: 'requeue [--outbound-id N] [--inbound-id N]   (no option: every failed mail, message and job)',
    async run(env, args) {
      const usage = 'requeue [--outbound-id N] [--inbound-id N]';
      const { values } = parseCliArgs(args, { 'outbound-id': { type: 'string' }, 'inbound-id': { type: 'string' } }, usage);
      const outboundId = positiveInt(values['outbound-id'], '--outbound-id', usage) ?? null;
      const inboundId = positiveInt(values['inbound-id'], '--inbound-id', usage) ?? null;
      const all = outboundId === null && inboundId === null;

      if (all || outboundId !== null) {
        env.io.out(`outbound mails requeued: ${await requeueFailedOutbound(env.db, outboundId)}`);
      }
      if (all || inboundId !== null) {
        env.io.out(`inbound messages requeued: ${await requeueFailedInbound(env.db, inboundId)}`);
      }
      if (!all) return;

      const redis = createProducerRedis(env.config.REDIS_URL);
      try {
        await waitForReady(redis, 5_000);
        for (const name of ['inbound', 'outbound']) {
          const queue = new Queue(name, { connection: redis, prefix: env.config.QUEUE_PREFIX });
          const failed = await queue.getJobCountByTypes('failed');
          await queue.retryJobs({ state: 'failed' });
          await queue.close();
          env.io.out(`${name} jobs retried: ${failed}`);
        }
      } catch (err) {
        env.io.out(
          `queue jobs not retried (Redis: ${err instanceof Error ? err.message : String(err)}); the sweepers will still pick up the rows above`,
        );
      } finally {
        redis.disconnect();
      }
    },
  },
];
