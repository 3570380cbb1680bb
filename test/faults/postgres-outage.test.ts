import { afterAll, beforeAll, expect, it } from 'vitest';
import { countRun, printCounts, startFaultRun, waitFor, type FaultRun } from './support/harness.js';
import { loadMessage, newOutcome, runLoad, untilAcked } from './support/load.js';
import { OUTBOUND_BATCHES_IN_FLIGHT } from '../../src/jobs/outbound/deliver-batch.js';

const N = 1_500;
const OUTAGE_MS = 6_000;

let run: FaultRun;
beforeAll(async () => {
  run = await startFaultRun({ proxyPostgres: true });
});
afterAll(() => run?.teardown());

it('PostgreSQL cut mid-run: 451 within 5 s, never 250 while down, acceptance resumes by itself, nothing acknowledged is lost', async () => {
  const messages = Array.from({ length: N }, (_, i) => loadMessage(i, run.tag));
  const live = newOutcome();
  // A steady trickle rather than a flood, so replies keep coming through the outage.
  const load = runLoad({ port: () => run.smtpPort, messages, connections: 4, deadlineMs: 180_000, outcome: live, retryDelayMs: 250 });

  await untilAcked(live, Math.floor(N / 4));
  const cutAt = Date.now();
  run.pgProxy!.cut();
  await new Promise((r) => setTimeout(r, OUTAGE_MS));
  const restoredAt = Date.now();
  run.pgProxy!.restore();
  const outcome = await load;

  const during = outcome.replies.filter((r) => r.at > cutAt && r.at < restoredAt);
  const first451 = during.find((r) => r.reply.startsWith('451'));
  // A transaction that committed just before the cut may still be answered 250 right after it.
  const late250 = during.filter((r) => r.reply.startsWith('250') && r.at > cutAt + 1_000);
  const resumed = outcome.replies.find((r) => r.at > restoredAt && r.reply.startsWith('250'));
  const acked = [...outcome.final.values()].filter((r) => r.startsWith('250')).length;

  const counts = await waitFor(
    'processing to catch up after the outage',
    () => countRun(run, acked),
    (c) => c.pending === 0 && c.tickets >= acked && c.outboundSent >= c.tickets,
    120_000,
  );
  printCounts('postgres-cut', counts, {
    replies451DuringOutage: during.filter((r) => r.reply.startsWith('451')).length,
    msTo451: first451 ? first451.at - cutAt : -1,
    msToResume: resumed ? resumed.at - restoredAt : -1,
  });

  expect(first451, 'a 451 while PostgreSQL is down').toBeDefined();
  expect(first451!.at - cutAt).toBeLessThan(5_000);
  expect(first451!.reply).toMatch(/^451 4\.3\.0/);
  expect(late250).toEqual([]);
  expect(resumed, 'a 250 after restore without restarting anything').toBeDefined();
  expect(acked).toBe(N);
  expect(counts.distinctMessages).toBe(N);
  expect(counts.tickets).toBe(N);
  expect(counts.distinctTicketSubjects).toBe(N);
  expect(counts.outboundSent).toBe(N);
  // A send the relay accepted while PostgreSQL was being cut cannot be marked sent and goes
  // out again after recovery, with the same Message-ID. At most the sends in flight at the cut:
  // OUTBOUND_BATCHES_IN_FLIGHT × OUTBOUND_CONCURRENCY (default 4) rows in delivery at once (batches of one row per connection).
  expect(counts.sinkDuplicates).toBeLessThanOrEqual(OUTBOUND_BATCHES_IN_FLIGHT * 4);
});
