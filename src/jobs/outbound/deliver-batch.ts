import type { AppContext } from '../../context.js';
import { lockRecipientsSql } from '../../mail/breakers.js';
import type { ComposedMail } from '../../mail/compose.js';
import { loadMailContexts, type LoadedMail } from '../../mail/mail-context.js';
import { sendWithFiles } from './files.js';
import { batcherFor, JobBatcher, settleInto, type Settled } from '../job-batcher.js';
import {
  deliverOutboundMail,
  markSentSql,
  notLoaded,
  prepare,
  recordSendFailure,
  settleOutcome,
  transact,
  type DeliveryOutcome,
} from './deliver.js';

/**
 * The outbound side of the job batcher (../job-batcher.ts): the send-mail
 * jobs that run together share one transaction — every recipient's lock in
 * the BEGIN message, all rows with their context in one prepared statement,
 * the sends in parallel over the pooled transport, and one `sent` mark in
 * the COMMIT message — instead of three round trips per mail. Each row
 * keeps its own outcome (sent, retried, failed, suppressed).
 *
 * The breakers count mail already sent, so a batch sends at most one mail
 * per recipient; a second one to the same address waits for the commit and
 * goes alone, and sees the first one counted. The crash window (relay said
 * 250, commit not yet done) spans the batches in flight: at most
 * OUTBOUND_BATCHES_IN_FLIGHT × OUTBOUND_CONCURRENCY mails.
 */

interface BatchResult {
  outcomes: Map<number, DeliveryOutcome>;
  /** Same recipient as an earlier row of the batch: delivered alone after the commit. */
  deferred: number[];
}

async function attemptBatch(ctx: AppContext, ids: number[], sending: { started: boolean }): Promise<BatchResult> {
  return transact(ctx, lockRecipientsSql(ids), async (conn) => {
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

/**
 * The rows of send-mail jobs that run together: one batch, then the
 * deferred rows one by one. A batch that fails before any mail went out is
 * retried row by row, so one row that cannot be handled never fails its
 * neighbours; one that fails after sending (the commit) fails every job,
 * and BullMQ's retry finds each row as the database has it.
 */
export async function deliverOutboundJobs(ctx: AppContext, ids: number[]): Promise<Map<number, Settled<void>>> {
  const settled = new Map<number, Settled<void>>();
  const one = (id: number) => settleInto(settled, id, deliverOutboundMail(ctx, id));
  if (ids.length === 1) {
    await one(ids[0]!);
    return settled;
  }
  const sending = { started: false };
  let batch: BatchResult;
  try {
    batch = await attemptBatch(ctx, ids, sending);
  } catch (err) {
    if (sending.started) throw err;
    ctx.log.warn({ err: String(err), outboundIds: ids }, 'outbound batch failed before sending; delivering its rows one by one');
    for (const id of ids) await one(id);
    return settled;
  }
  for (const [id, outcome] of batch.outcomes)
    await settleInto(
      settled,
      id,
      Promise.resolve().then(() => settleOutcome(ctx, id, outcome)),
    );
  for (const id of batch.deferred) await one(id);
  return settled;
}

const batchers = new WeakMap<AppContext, JobBatcher<void>>();

/**
 * Three batches of OUTBOUND_CONCURRENCY at once, so one is sending over every
 * relay connection while the others read or commit (bench:outbound: 0.48–0.55
 * of bare nodemailer with two, 0.56–0.68 with three). The worker runs this
 * many times OUTBOUND_CONCURRENCY jobs.
 */
export const OUTBOUND_BATCHES_IN_FLIGHT = 3;

/** The process's batcher for this context; a batch is at most OUTBOUND_CONCURRENCY jobs. */
export function outboundBatcher(ctx: AppContext): JobBatcher<void> {
  return batcherFor(
    batchers,
    ctx,
    () => new JobBatcher((ids) => deliverOutboundJobs(ctx, ids), ctx.config.OUTBOUND_CONCURRENCY, OUTBOUND_BATCHES_IN_FLIGHT),
  );
}
