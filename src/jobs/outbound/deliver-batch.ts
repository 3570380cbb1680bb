import type { AppContext } from '../../context.js';
import { pipelinedTransaction } from '../../db/pipelined-transaction.js';
import { lockRecipientsSql, markSentSql } from '../../db/queries/outbound-mails.js';
import type { ComposedMail } from '../../mail/compose.js';
import { loadMailContexts, type LoadedMail } from '../../db/queries/outbound-mail-contexts.js';
import { sendWithFiles } from './files.js';
import { UnrecoverableError } from 'bullmq';
import { notLoaded, prepare, recordSendFailure, settleOutcome, type DeliveryOutcome } from './deliver.js';

/**
 * The send-mail jobs' unit of work: the outbox rows of the jobs taken
 * together share one transaction — every recipient's lock in the BEGIN message, all rows with
 * their context in one prepared statement, the sends in parallel over the
 * pooled transport, and one `sent` mark in the COMMIT message — instead of
 * three round trips per mail. Each row keeps its own outcome (sent,
 * retried, failed, suppressed).
 *
 * The breakers count mail already sent, so a batch sends at most one mail
 * per recipient; a second one to the same address waits for the commit and
 * goes alone (a batch of one), and sees the first one counted. The crash
 * window (relay said 250, commit not yet done) spans the jobs in flight: at
 * most OUTBOUND_BATCHES_IN_FLIGHT × OUTBOUND_CONCURRENCY mails.
 */

/**
 * Batches in delivery at once (src/jobs/batch-worker.ts), each of up to
 * OUTBOUND_CONCURRENCY rows, one per relay connection: three, so one batch
 * is sending over every connection while others read or commit
 * (bench:outbound: 0.48–0.55 of bare nodemailer with two, 0.56–0.68 with
 * three). It is also the crash window: at most this many batches of mail
 * can have reached the relay without their `sent` mark.
 */
export const OUTBOUND_BATCHES_IN_FLIGHT = 3;

interface BatchResult {
  outcomes: Map<number, DeliveryOutcome>;
  /** Same recipient as an earlier row of the batch: delivered alone after the commit. */
  deferred: number[];
}

async function attemptBatch(ctx: AppContext, ids: number[], sending: { started: boolean }): Promise<BatchResult> {
  // The relay already has each mail when we commit: a `sent` mark lost to a crash means one duplicate
  // (at-least-once), never a lost mail, so the commit need not wait for its WAL flush.
  return pipelinedTransaction(ctx.db, { first: lockRecipientsSql(ids), durable: false }, async (conn) => {
    const outcomes = new Map<number, DeliveryOutcome>();
    const deferred: number[] = [];
    const loaded = await loadMailContexts(conn, ctx.config, ids, { lock: true });
    for (const id of ids) if (!loaded.has(id)) outcomes.set(id, await notLoaded(conn, id));

    const recipients = new Set<string>();
    const toSend: Array<{ loaded: LoadedMail; mail: ComposedMail }> = [];
    for (const l of [...loaded.values()].sort((a, b) => a.row.id - b.row.id)) {
      if (l.row.status === 'queued' && recipients.has(l.row.recipient)) {
        deferred.push(l.row.id);
        continue;
      }
      recipients.add(l.row.recipient);
      const p = await prepare(conn, ctx.config, l);
      if ('outcome' in p) outcomes.set(l.row.id, p.outcome);
      else toSend.push({ loaded: l, mail: p.mail });
    }

    sending.started = toSend.length > 0;
    const sent = await Promise.allSettled(toSend.map((s) => sendWithFiles(ctx, s.loaded, s.mail)));
    const sentIds: number[] = [];
    for (const [i, r] of sent.entries()) {
      const id = toSend[i]!.loaded.row.id;
      if (r.status === 'fulfilled') {
        sentIds.push(id);
        outcomes.set(id, { type: 'sent', response: r.value.response });
      } else {
        outcomes.set(id, await recordSendFailure(conn, id, r.reason));
      }
    }
    return { value: { outcomes, deferred }, last: markSentSql(sentIds) };
  });
}

/** One row alone; an error before any mail went out stays with that row (its job retries it). */
async function deliverAlone(ctx: AppContext, id: number, into: Map<number, DeliveryOutcome>): Promise<void> {
  try {
    const alone = await attemptBatch(ctx, [id], { started: false });
    for (const [k, v] of alone.outcomes) into.set(k, v);
  } catch (err) {
    ctx.log.warn({ err: String(err), outboundId: id }, 'outbound mail could not be delivered; will retry');
    into.set(id, { type: 'error', error: err instanceof Error ? err.message : String(err) });
  }
}

/**
 * The rows of one job: one batch, then the deferred rows one by one. A
 * batch that fails before any mail went out is redone row by row, so one row
 * that cannot be handled never fails its neighbours; one that fails after
 * sending (the commit) fails the job, and BullMQ's retry finds each row as
 * the database has it.
 */
export async function deliverOutbound(ctx: AppContext, ids: number[]): Promise<Map<number, DeliveryOutcome>> {
  const unique = [...new Set(ids)];
  const outcomes = new Map<number, DeliveryOutcome>();
  const sending = { started: false };
  let batch: BatchResult;
  try {
    batch = await attemptBatch(ctx, unique, sending);
  } catch (err) {
    if (sending.started || unique.length === 1) throw err;
    ctx.log.warn({ err: String(err), outboundIds: unique }, 'outbound batch failed before sending; delivering its rows one by one');
    for (const id of unique) await deliverAlone(ctx, id, outcomes);
    return outcomes;
  }
  for (const [id, outcome] of batch.outcomes) outcomes.set(id, outcome);
  for (const id of batch.deferred) await deliverAlone(ctx, id, outcomes);
  return outcomes;
}

/** One row, as tests and tools deliver it: a batch of one; throws what its job would. */
export async function deliverOutboundMail(ctx: AppContext, outboundId: number): Promise<void> {
  if (!Number.isSafeInteger(outboundId) || outboundId <= 0) throw new UnrecoverableError(`invalid outbound id ${outboundId}`);
  const outcomes = await deliverOutbound(ctx, [outboundId]);
  settleOutcome(ctx, outboundId, outcomes.get(outboundId)!);
}
