import { afterAll, beforeAll, expect, it } from 'vitest';
import { countRun, printCounts, startFaultRun, waitFor, type FaultRun } from './support/harness.js';
import { loadMessage, newOutcome, runLoad, untilAcked } from './support/load.js';

const N = 1_500;
const OUTAGE_MS = 8_000;

let run: FaultRun;
beforeAll(async () => {
  run = await startFaultRun({ proxyRedis: true });
});
afterAll(() => run?.teardown());

it('Redis cut mid-run: acceptance continues, processing and sending catch up by themselves, no lost or doubled mail', async () => {
  const messages = Array.from({ length: N }, (_, i) => loadMessage(i, run.tag));
  const live = newOutcome();
  const load = runLoad({ port: () => run.smtpPort, messages, connections: 4, deadlineMs: 180_000, outcome: live, retryDelayMs: 250 });

  await untilAcked(live, Math.floor(N / 4));
  const cutAt = Date.now();
  run.redisProxy!.cut();
  await new Promise((r) => setTimeout(r, OUTAGE_MS));
  const restoredAt = Date.now();
  // While Redis is down the listener keeps answering 250: acceptance depends on PostgreSQL only.
  const during = live.replies.filter((r) => r.at > cutAt && r.at < restoredAt);
  const pendingAtRestore = (await countRun(run, 0)).pending;
  run.redisProxy!.restore();
  const outcome = await load;
  const acked = [...outcome.final.values()].filter((r) => r.startsWith('250')).length;

  const counts = await waitFor(
    'processing and sending to catch up after Redis returns',
    () => countRun(run, acked),
    (c) => c.pending === 0 && c.tickets >= acked && c.outboundSent >= c.tickets && c.sinkReceived >= c.tickets,
    120_000,
  );
  printCounts('redis-cut', counts, {
    repliesDuringOutage: during.length,
    accepted250DuringOutage: during.filter((r) => r.reply.startsWith('250')).length,
    non250DuringOutage: during.filter((r) => !r.reply.startsWith('250')).length,
    pendingAtRestore,
    msAfterRestore: Date.now() - restoredAt,
  });

  expect(during.filter((r) => r.reply.startsWith('250')).length).toBeGreaterThan(50);
  expect(during.filter((r) => !r.reply.startsWith('250'))).toEqual([]);
  // Messages accepted during the outage waited in PostgreSQL, not in memory.
  expect(pendingAtRestore).toBeGreaterThan(0);
  expect(acked).toBe(N);
  expect(counts.distinctMessages).toBe(N);
  expect(counts.rows).toBe(N);
  expect(counts.tickets).toBe(N);
  expect(counts.distinctTicketSubjects).toBe(N);
  expect(counts.outboundSent).toBe(N);
  expect(counts.sinkReceived).toBe(N);
  expect(counts.sinkDuplicates).toBe(0);
});
