import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertInboundMessage } from '../../src/db/queries/inbound-messages.js';
import { enqueueInbound } from '../../src/jobs/enqueue-inbound.js';
import { inboundJobId } from '../../src/jobs/job-ids.js';
import { startWorkers } from '../../src/jobs/worker.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { failingTransactions } from '../support/failing-db.js';
import { buildMail, uid } from '../inbound/support/smtp.js';

/**
 * The worker takes the jobs waiting when it asks as one unit of work
 * (src/jobs/batch-worker.ts): under a trickle, several accept commits of a
 * message each become one transaction, and each job still completes or
 * fails on its own.
 */

let app: TestApp;

beforeAll(async () => {
  // No workers of its own: each test starts them once its jobs wait in the queue.
  app = await startTestApp({ REPLYLINE_ROLES: 'smtp' });
});
afterAll(async () => {
  await app?.teardown();
});

async function storeOne(tag: string, i: number): Promise<number> {
  const from = `c${i}-${tag}@customer.example`;
  const raw = await buildMail({ from, to: 'support@help.test', subject: `trickle ${i}`, text: 'hello' });
  return insertInboundMessage(app.ctx.db, raw, {
    mailFrom: from,
    rcptTo: ['support@help.test'],
    clientAddress: '127.0.0.1',
    helo: 'c.test',
    tls: false,
  });
}

async function until<T>(what: string, probe: () => Promise<T | null>): Promise<T> {
  for (let i = 0; i < 300; i++) {
    const v = await probe();
    if (v !== null) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function jobState(firstId: number): Promise<{ state: string; result: unknown; reason: string }> {
  const job = await app.ctx.queues.inbound.getJob(inboundJobId(app.ctx, firstId));
  return { state: job ? await job.getState() : 'missing', result: job?.returnvalue, reason: job?.failedReason ?? '' };
}

describe('batch worker', () => {
  it('decides the jobs waiting together in one transaction, and completes each job with its own result', async () => {
    const tag = uid();
    const ids = [await storeOne(tag, 0), await storeOne(tag, 1), await storeOne(tag, 2)];
    // Three accept commits of one message each: three jobs, all waiting before the worker starts.
    for (const id of ids) await enqueueInbound(app.ctx, [id]);
    const workers = startWorkers(app.ctx);
    try {
      const rows = await until('all three processed', async () => {
        const r = await app.ctx.db.selectFrom('inbound_messages').select(['status', 'processed_at']).where('id', 'in', ids).execute();
        return r.every((x) => x.status === 'processed') ? r : null;
      });
      // now() is the transaction's start time: one timestamp means one transaction.
      expect(new Set(rows.map((r) => r.processed_at!.getTime())).size).toBe(1);
      for (const id of ids)
        expect(await until('job completed', async () => ((await jobState(id)).state === 'completed' ? jobState(id) : null))).toMatchObject({
          result: { processed: 1 },
        });
    } finally {
      await workers.close();
    }
  });

  it('retries only the job whose row failed; the job taken with it completes', async () => {
    const tag = uid();
    const [poisoned, healthy] = [await storeOne(tag, 0), await storeOne(tag, 1)];
    await enqueueInbound(app.ctx, [poisoned]);
    await enqueueInbound(app.ctx, [healthy]);
    // The joint transaction fails, then the first row's own one: the second row commits alone.
    const workers = startWorkers({ ...app.ctx, db: failingTransactions(app.ctx.db, 2) });
    try {
      const healthyJob = await until('healthy job completed', async () =>
        (await jobState(healthy)).state === 'completed' ? jobState(healthy) : null,
      );
      expect(healthyJob.result).toEqual({ processed: 1 });
      const first = await jobState(poisoned);
      expect(first.state).toBe('delayed'); // BullMQ's backoff before the retry
      expect(first.reason).toContain(`1 of 1 messages failed (message ${poisoned}`);
      const row = await app.ctx.db
        .selectFrom('inbound_messages')
        .select(['status', 'attempts'])
        .where('id', '=', poisoned)
        .executeTakeFirstOrThrow();
      expect(row).toEqual({ status: 'received', attempts: 1 });
      // The retry (the database works again) processes it.
      const retried = await until('poisoned job retried', async () =>
        (await jobState(poisoned)).state === 'completed' ? jobState(poisoned) : null,
      );
      expect(retried.result).toEqual({ processed: 1 });
    } finally {
      await workers.close();
    }
  });
});
