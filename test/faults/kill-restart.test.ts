import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadMessage, newOutcome, runLoad, untilAcked } from './support/load.js';
import { countRun, printCounts, startFaultRun, waitFor, type FaultRun } from './support/harness.js';
import { OUTBOUND_BATCHES_IN_FLIGHT } from '../../src/jobs/outbound/deliver-batch.js';

const N = Number(process.env.FAULT_KILL_MESSAGES ?? 5_000);
const KILLS = 3;

let run: FaultRun;
beforeAll(async () => {
  run = await startFaultRun();
});
afterAll(() => run?.teardown());

it(`kill -9 at random moments during a ${N}-message run: every 250 is stored and processed exactly once`, async () => {
  const messages = Array.from({ length: N }, (_, i) => loadMessage(i, run.tag));
  const live = newOutcome();
  const load = runLoad({ port: () => run.smtpPort, messages, connections: 10, deadlineMs: 240_000, outcome: live });

  // Kill at random points of the run (by progress, so it happens whatever the speed), restart after a pause.
  const killPoints = Array.from({ length: KILLS }, () => Math.floor(N * (0.1 + Math.random() * 0.8))).sort((a, b) => a - b);
  let kills = 0;
  for (const point of killPoints) {
    await untilAcked(live, point);
    await new Promise((r) => setTimeout(r, Math.random() * 50));
    run.proc.child.kill('SIGKILL');
    await run.proc.exited;
    kills++;
    await new Promise((r) => setTimeout(r, 300 + Math.random() * 700));
    await run.start();
  }
  const outcome = await load;
  const acked = [...outcome.final.values()].filter((r) => r.startsWith('250')).length;
  const refused = outcome.replies.filter((r) => !r.reply.startsWith('250')).length;

  // BullMQ recovers jobs of killed workers once their locks expire (stalled-job check).
  const counts = await waitFor(
    'every message processed and every acknowledgement sent',
    () => countRun(run, acked),
    (c) => c.pending === 0 && c.tickets >= acked && c.outboundSent >= c.tickets,
    180_000,
  );
  printCounts('kill-9', counts, { kills, connectionErrors: outcome.connectionErrors, non250Replies: refused });

  expect(kills).toBeGreaterThan(0);
  // The client retried everything until it got 250: nothing was given up.
  expect(acked).toBe(N);
  // Rows may exceed N (a message committed just before a kill, then retried by the client);
  // deduplication by Message-ID makes processing exactly-once regardless.
  expect(counts.distinctMessages).toBe(N);
  expect(counts.tickets).toBe(N);
  expect(counts.distinctTicketSubjects).toBe(N);
  expect(counts.held).toBe(0);
  expect(counts.pending).toBe(0);
  expect(counts.outboundSent).toBe(N);
  // A kill between the relay's 250 and our commit may re-send the mails of the batches in
  // flight (at-least-once): at most OUTBOUND_BATCHES_IN_FLIGHT × OUTBOUND_CONCURRENCY (default 4) per kill.
  expect(counts.sinkDuplicates).toBeLessThanOrEqual(kills * OUTBOUND_BATCHES_IN_FLIGHT * 4);
});
