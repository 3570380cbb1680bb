/**
 * Group processing for jobs (the accept batcher's pattern, one level up).
 * Each job still stands for one row and settles with that row's own result,
 * but jobs that arrive while earlier ones are running share the next batch,
 * so a burst pays one transaction's round trips per batch instead of per
 * row. Nothing waits on a timer: a lone job runs at the end of the current
 * I/O phase.
 */

export type Settled<R> = PromiseSettledResult<R>;

interface Pending<R> {
  id: number;
  resolve(r: R): void;
  reject(err: unknown): void;
}

export class JobBatcher<R> {
  private queue: Array<Pending<R>> = [];
  private running = 0;
  private scheduled = false;

  constructor(
    /** Settles every id it is given; duplicates are passed once. */
    private readonly runBatch: (ids: number[]) => Promise<Map<number, Settled<R>>>,
    private readonly maxBatch: number,
    /** Batches running at once: while one waits on the network (parse threads, the relay), another reads or writes. */
    private readonly maxInFlight: number,
  ) {}

  process(id: number): Promise<R> {
    return new Promise((resolve, reject) => {
      this.queue.push({ id, resolve, reject });
      // BullMQ hands over the jobs that came back in one Redis reply one by one;
      // waiting for the end of this I/O phase lets them share a batch.
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.pump();
        });
      }
    });
  }

  private pump(): void {
    while (this.running < this.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.running++;
      void this.run(batch).finally(() => {
        this.running--;
        this.pump();
      });
    }
  }

  private async run(batch: Array<Pending<R>>): Promise<void> {
    let settled: Map<number, Settled<R>>;
    try {
      settled = await this.runBatch([...new Set(batch.map((p) => p.id))]);
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    for (const p of batch) {
      const r = settled.get(p.id);
      if (!r) p.reject(new Error(`batch returned no result for job ${p.id}`));
      else if (r.status === 'fulfilled') p.resolve(r.value);
      else p.reject(r.reason);
    }
  }
}

/** Settles one promise into the map (a rejection stays with its own id). */
export async function settleInto<R>(map: Map<number, Settled<R>>, id: number, run: Promise<R>): Promise<void> {
  map.set(
    id,
    await run.then(
      (value) => ({ status: 'fulfilled', value }) as const,
      (reason: unknown) => ({ status: 'rejected', reason }) as const,
    ),
  );
}

/** One batcher per context and queue: the context is what a process's workers share. */
export function batcherFor<C extends object, R>(cache: WeakMap<C, JobBatcher<R>>, ctx: C, make: () => JobBatcher<R>): JobBatcher<R> {
  let b = cache.get(ctx);
  if (!b) {
    b = make();
    cache.set(ctx, b);
  }
  return b;
}
