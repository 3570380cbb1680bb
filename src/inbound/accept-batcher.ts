import type { Db } from '../db/database.js';
import { insertInboundMessages, type InboundEnvelope } from '../db/queries/inbound-messages.js';

/**
 * Group commit for the SMTP accept path. Every DATA still waits for the
 * commit of its own row before it is answered 250; messages that arrive
 * while a commit is in flight simply share the next one (one multi-row
 * INSERT, one WAL flush, one Redis round trip for their jobs) instead of
 * queueing up behind one commit each. Nothing waits on a timer: a lone
 * message is written at once. Each commit becomes one process-inbound job
 * carrying its row ids (onCommitted).
 */

interface Pending {
  raw: Buffer;
  env: InboundEnvelope;
  resolve(id: number): void;
  reject(err: unknown): void;
}

const MAX_ROWS = 64;
const MAX_BYTES = 32 * 1024 * 1024;

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
          ids = await insertInboundMessages(this.db, batch);
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
