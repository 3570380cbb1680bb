import { sql } from 'kysely';
import type { AppContext } from '../context.js';
import type { Db } from '../db/database.js';
import type { InboundEnvelope } from '../db/queries/inbound-messages.js';
import { enqueueBulk } from '../jobs/define-job.js';
import { inboundJobId } from '../jobs/job-ids.js';
import { processInboundContract } from '../jobs/enqueue-inbound.js';

/**
 * Group commit for the SMTP accept path. Every DATA still waits for the
 * commit of its own row before it is answered 250; messages that arrive
 * while a commit is in flight simply share the next one (one multi-row
 * INSERT, one WAL flush, one Redis round trip for their jobs) instead of
 * queueing up behind one commit each. Nothing waits on a timer: a lone
 * message is written at once.
 */

interface Pending {
  raw: Buffer;
  env: InboundEnvelope;
  resolve(id: number): void;
  reject(err: unknown): void;
}

const MAX_ROWS = 64;
const MAX_BYTES = 32 * 1024 * 1024;

async function insertBatch(db: Db, batch: Pending[]): Promise<number[]> {
  // One round trip: ids are drawn in a CTE that is evaluated once, so each
  // waiting client learns its own row's id without relying on RETURNING order.
  const values = batch.map(
    (p, i) =>
      sql`(${i + 1}::int, ${p.raw}::bytea, ${p.raw.length}::int, ${p.env.mailFrom}::text, ${p.env.rcptTo}::text[], ${p.env.clientAddress}::text, ${p.env.helo}::text, ${p.env.tls}::boolean)`,
  );
  const { rows } = await sql<{ id: number; ord: number }>`
    WITH ids AS MATERIALIZED (
      SELECT nextval(pg_get_serial_sequence('inbound_messages', 'id'))::bigint AS id, ord::int AS ord FROM generate_series(1, ${batch.length}::int) AS ord
    ), ins AS (
      INSERT INTO inbound_messages (id, raw, size, mail_from, rcpt_to, client_address, helo, tls)
      SELECT ids.id, v.raw, v.size, v.mail_from, v.rcpt_to, v.client_address, v.helo, v.tls
      FROM ids JOIN (VALUES ${sql.join(values)}) AS v(ord, raw, size, mail_from, rcpt_to, client_address, helo, tls) ON v.ord = ids.ord
      RETURNING id
    )
    SELECT ids.id, ids.ord FROM ids WHERE ids.id IN (SELECT id FROM ins) ORDER BY ids.ord
  `.execute(db);
  if (rows.length !== batch.length) throw new Error(`inbound batch insert stored ${rows.length} of ${batch.length} rows`);
  return rows.map((r) => Number(r.id));
}

export class AcceptBatcher {
  private queue: Pending[] = [];
  private flushing = false;

  constructor(
    private readonly db: Db,
    private readonly onCommitted: (ids: number[]) => void,
  ) {}

  /** Resolves with the row id once the row is committed; rejects if the commit failed. */
  insert(raw: Buffer, env: InboundEnvelope): Promise<number> {
    return new Promise((resolve, reject) => {
      this.queue.push({ raw, env, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private take(): Pending[] {
    let bytes = 0;
    let n = 0;
    while (n < this.queue.length && n < MAX_ROWS && (n === 0 || bytes + this.queue[n]!.raw.length <= MAX_BYTES)) {
      bytes += this.queue[n]!.raw.length;
      n++;
    }
    return this.queue.splice(0, n);
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.take();
        let ids: number[];
        try {
          ids = await insertBatch(this.db, batch);
        } catch (err) {
          for (const p of batch) p.reject(err);
          continue;
        }
        batch.forEach((p, i) => p.resolve(ids[i]!));
        this.onCommitted(ids);
      }
    } finally {
      this.flushing = false;
    }
  }
}

/** One Redis round trip for a committed batch; best effort, the sweeper covers a Redis outage. */
export async function enqueueInboundBatch(
  ctx: Pick<AppContext, 'queues' | 'redis' | 'log' | 'installationId'>,
  ids: number[],
): Promise<void> {
  const items = ids.map((inboundId) => ({ data: { inboundId }, options: { jobId: inboundJobId(ctx, inboundId) } }));
  await enqueueBulk(ctx, processInboundContract, items).catch((err) =>
    ctx.log.warn({ err: String(err), inboundIds: ids }, 'enqueue failed; sweeper will retry'),
  );
}
