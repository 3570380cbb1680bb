import { afterAll, beforeAll, expect, it } from 'vitest';
import { countRun, printCounts, startFaultRun, waitFor, type FaultRun } from './support/harness.js';
import { loadMessage, runLoad } from './support/load.js';

const N = 200;
const REFUSED = 7; // the one recipient the relay refuses permanently

let run: FaultRun;
beforeAll(async () => {
  run = await startFaultRun();
});
afterAll(() => run?.teardown());

async function outbox(run: FaultRun) {
  return run.db
    .selectFrom('outbound_mails')
    .select(['status', 'recipient', 'last_error', 'attempts'])
    .where('recipient', 'like', `load-${run.tag}-%`)
    .execute();
}

it('relay down, then 4xx, then a 5xx for one recipient: all else delivered once after recovery, the 5xx one failed with its reason', async () => {
  await run.sink.stop(); // the relay is down before the first mail
  const messages = Array.from({ length: N }, (_, i) => loadMessage(i, run.tag));
  const outcome = await runLoad({ port: () => run.smtpPort, messages, connections: 4, deadlineMs: 60_000 });
  const acked = [...outcome.final.values()].filter((r) => r.startsWith('250')).length;
  expect(acked).toBe(N);

  // Tickets are created while the relay is down: acceptance and processing never wait for it.
  await waitFor(
    'tickets while the relay is down',
    () => countRun(run, acked),
    (c) => c.tickets === N,
    60_000,
  );
  // Wait for real delivery attempts against the dead relay (not a fixed sleep): rows must stay queued.
  const duringDown = await waitFor(
    'delivery attempts while the relay is down',
    () => outbox(run),
    (r) => r.length === N && r.some((x) => x.attempts > 0),
    60_000,
  );

  // Back, but answering 451 to everything for a while.
  run.sink.mode = { type: 'reject', code: 451, message: '4.3.0 Try again later' };
  await run.sink.restart();
  const during4xx = await waitFor(
    'a 451 from the relay on a retry',
    () => outbox(run),
    (r) => r.some((x) => /^451/.test(x.last_error ?? '')),
    60_000,
  );

  // Recovered, except one mailbox that does not exist.
  const refused = `load-${run.tag}-${REFUSED}@customer.example`;
  run.sink.rejectRecipients.set(refused, { code: 550, message: '5.1.1 No such user here' });
  run.sink.mode = { type: 'accept' };
  const rows = await waitFor(
    'every outbox row to settle',
    () => outbox(run),
    (r) => r.every((x) => x.status !== 'queued'),
    120_000,
  );
  const counts = await countRun(run, acked);
  const failed = rows.filter((r) => r.status === 'failed');
  printCounts('relay', counts, {
    queuedWhileDown: duringDown.filter((r) => r.status === 'queued').length,
    attemptsWhileDown: duringDown.reduce((a, r) => a + r.attempts, 0),
    queuedDuring4xx: during4xx.filter((r) => r.status === 'queued').length,
    failed: failed.length,
  });

  expect(duringDown.every((r) => r.status === 'queued')).toBe(true);
  expect(duringDown.some((r) => r.attempts > 0)).toBe(true);
  expect(during4xx.every((r) => r.status === 'queued')).toBe(true);
  expect(during4xx.some((r) => /^451/.test(r.last_error ?? ''))).toBe(true);
  expect(failed.map((r) => r.recipient)).toEqual([refused]);
  expect(failed[0]!.last_error).toMatch(/550 5\.1\.1 No such user here/);
  expect(counts.outboundSent).toBe(N - 1);
  expect(counts.sinkReceived).toBe(N - 1);
  expect(counts.sinkDuplicates).toBe(0);
});
