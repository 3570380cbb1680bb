import { afterAll, beforeAll, expect, it } from 'vitest';
import { countRun, printCounts, startFaultRun, waitFor, type FaultRun } from './support/harness.js';
import { loadMessage, newOutcome, runLoad, untilAcked } from './support/load.js';

const N = 2_000;

let run: FaultRun;
beforeAll(async () => {
  run = await startFaultRun();
});
afterAll(() => run?.teardown());

it('SIGTERM under load: in-flight transactions finish or get 421, exit 0, no job half-done, restart completes the rest exactly once', async () => {
  const messages = Array.from({ length: N }, (_, i) => loadMessage(i, run.tag));
  const live = newOutcome();
  const load = runLoad({ port: () => run.smtpPort, messages, connections: 10, deadlineMs: 180_000, outcome: live, retryDelayMs: 250 });

  await untilAcked(live, Math.floor(N / 3));
  const termAt = Date.now();
  run.proc.child.kill('SIGTERM');
  const code = await run.proc.exited;
  const exitedAt = Date.now();

  // Stopped: whatever was committed is either untouched ('received') or fully processed.
  const half = await run.db
    .selectFrom('inbound_messages')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('status', '=', 'processed')
    .where('ticket_id', 'is', null)
    .executeTakeFirstOrThrow();
  const ackedBeforeExit = live.replies.filter((r) => r.at <= exitedAt && r.reply.startsWith('250')).length;
  const repliesDuringShutdown = live.replies.filter((r) => r.at > termAt && r.at <= exitedAt);

  await run.start();
  const outcome = await load;
  const acked = [...outcome.final.values()].filter((r) => r.startsWith('250')).length;
  const counts = await waitFor(
    'the restarted process to finish the work',
    () => countRun(run, acked),
    (c) => c.pending === 0 && c.tickets >= acked && c.outboundSent >= c.tickets,
    120_000,
  );
  printCounts('sigterm', counts, {
    exitCode: String(code),
    shutdownMs: exitedAt - termAt,
    ackedBeforeExit,
    repliesDuringShutdown: repliesDuringShutdown.length,
    non250DuringShutdown:
      repliesDuringShutdown
        .filter((r) => !r.reply.startsWith('250'))
        .map((r) => r.reply.slice(0, 3))
        .join('|') || 'none',
  });

  expect(code).toBe(0);
  expect(Number(half.n)).toBe(0);
  // During shutdown a client hears 250 (its transaction finished) or 421, never anything else.
  // Ten connections were mid-conversation at SIGTERM, so an empty list means the check saw nothing.
  expect(repliesDuringShutdown.length).toBeGreaterThan(0);
  expect(repliesDuringShutdown.every((r) => /^(250|421)/.test(r.reply))).toBe(true);
  expect(acked).toBe(N);
  expect(counts.distinctMessages).toBe(N);
  expect(counts.tickets).toBe(N);
  expect(counts.distinctTicketSubjects).toBe(N);
  expect(counts.outboundSent).toBe(N);
  expect(counts.sinkDuplicates).toBe(0);
});
