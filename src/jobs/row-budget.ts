/**
 * How many rows the jobs of one worker may work on at once. Jobs carry the
 * rows of one commit, so their size follows the traffic: under a trickle
 * each holds one message and several must run side by side to keep up;
 * during a burst each holds dozens and two at once already fill the parse
 * threads and the database (more only contend: bench:inbound took 109 s
 * instead of 82 s to ticket 10,000 messages with four such jobs at once).
 * A job waits, first come first served, until its rows fit; a job larger
 * than the whole budget runs once nothing else does.
 */
export class RowBudget {
  private used = 0;
  private readonly waiting: Array<{ rows: number; start(): void }> = [];

  constructor(readonly limit: number) {}

  async run<T>(rows: number, work: () => Promise<T>): Promise<T> {
    const n = Math.max(1, Math.min(rows, this.limit));
    if (this.waiting.length === 0 && this.used + n <= this.limit) this.used += n;
    else await new Promise<void>((start) => this.waiting.push({ rows: n, start }));
    try {
      return await work();
    } finally {
      this.used -= n;
      this.admit();
    }
  }

  private admit(): void {
    while (this.waiting.length > 0 && this.used + this.waiting[0]!.rows <= this.limit) {
      const next = this.waiting.shift()!;
      this.used += next.rows;
      next.start();
    }
  }
}
