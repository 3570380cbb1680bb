import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { AnalyzeOptions, AnalyzedMessage } from './analyze.js';

/**
 * Runs analyzeMessage in worker threads with a hard limit per message.
 * MIME parsing, charset decoding, HTML handling and reply stripping all run
 * attacker-controlled input through regular expressions; a thread that
 * overruns is terminated (the only way to stop a backtracking RegExp) and
 * replaced, so no single message can hold a core longer than the limit.
 *
 * The limit is the thread's own CPU time, read from /proc on Linux: on a
 * busy machine a message that needs 0.3 s of CPU can take seconds of wall
 * time and must not be failed for that. A generous wall-clock limit
 * (WALL_FACTOR × the limit) backs it up, and is the only limit where /proc
 * is not available.
 *
 * Why hand-written and not piscina (which runs on Node 20 and 24): piscina
 * gives pooling, queueing and AbortSignal cancellation, but not the two
 * things this pool exists for. The CPU-time limit needs to know which
 * thread runs which message and to watch that thread's /proc counters
 * while it runs; piscina hides the worker behind the task, so it could
 * only offer a wall-clock abort, which fails a 0.3 s message on a busy
 * machine. And queued work is shared fairly between senders (next free
 * thread to the client served least recently); piscina's queue is FIFO.
 * What is left here is small: spawn, ready handshake, one task per thread,
 * terminate-and-replace on overrun, close.
 */

export class ParseFailedError extends Error {
  constructor(
    message: string,
    readonly timedOut: boolean,
  ) {
    super(message);
    this.name = 'ParseFailedError';
  }
}

interface Pending {
  id: number;
  raw: Buffer;
  opts: AnalyzeOptions;
  timeoutMs: number;
  /** Who sent it (the client's IP key): queued work is shared fairly between senders. */
  fairKey: string;
  resolve(r: AnalyzedMessage): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  /** Loaded and listening: startup time never counts against a message. */
  ready: boolean;
  /** The thread's /proc stat file, when the OS exposes one. */
  statPath: string | null;
  task: Pending | null;
  timer: NodeJS.Timeout | null;
}

const WALL_FACTOR = 15;
const POLL_MS = 50;
/** Linux reports thread CPU time in clock ticks of 1/100 s (USER_HZ). */
const TICK_MS = 10;

/** utime + stime of one thread in ms, or null when it cannot be read. */
function threadCpuMs(statPath: string): number | null {
  try {
    const fields = readFileSync(statPath, 'latin1');
    const rest = fields.slice(fields.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) * TICK_MS;
  } catch {
    return null;
  }
}

/** Under tsx/vitest the sources are .ts: load the worker through tsx's loader. */
function spawnWorker(resourceLimitMb: number): Worker {
  const here = import.meta.url;
  // A small young generation: the thread handles one message at a time, and RSS counts.
  const options = { resourceLimits: { maxOldGenerationSizeMb: resourceLimitMb, maxYoungGenerationSizeMb: 8 } };
  if (here.endsWith('.ts')) {
    const file = new URL('./parse-worker.ts', here).href;
    const code = `import('tsx/esm/api').then(({ tsImport }) => tsImport(${JSON.stringify(file)}, ${JSON.stringify(here)}))`;
    return new Worker(code, { ...options, eval: true });
  }
  return new Worker(new URL('./parse-worker.js', here), options);
}

export class ParsePool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private closed = false;

  constructor(
    private readonly size: number,
    private readonly resourceLimitMb = 1024,
  ) {}

  analyze(raw: Buffer, opts: AnalyzeOptions, timeoutMs: number, fairKey = ''): Promise<AnalyzedMessage> {
    if (this.closed) return Promise.reject(new Error('parse pool is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, raw, opts, timeoutMs, fairKey, resolve, reject });
      this.dispatch();
    });
  }

  /** When each sender with queued work was last given a thread (a dispatch counter). */
  private readonly lastServed = new Map<string, number>();
  private served = 0;

  /**
   * The queued task to run next: the oldest of the sender served least
   * recently, so senders take turns and one sender's (or one IP's) flood of
   * expensive mail cannot make everyone else wait behind all of it.
   */
  private takeNext(): Pending {
    let best = 0;
    let bestServed = Infinity;
    for (let i = 0; i < this.queue.length; i++) {
      const served = this.lastServed.get(this.queue[i]!.fairKey) ?? -1;
      if (served < bestServed) {
        best = i;
        bestServed = served;
        if (served === -1) break;
      }
    }
    const task = this.queue.splice(best, 1)[0]!;
    this.lastServed.set(task.fairKey, ++this.served);
    // Only senders still waiting need a turn order; the map stays as small as the queue.
    if (!this.queue.some((t) => t.fairKey === task.fairKey)) this.lastServed.delete(task.fairKey);
    return task;
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      const slot = this.slots.find((s) => s.ready && s.task === null);
      if (!slot) {
        if (this.slots.length < this.size) this.addSlot();
        return;
      }
      const task = this.takeNext();
      slot.task = task;
      this.watch(slot, task);
      // A Buffer from pg is often a view into a larger socket buffer, and structured
      // cloning copies the whole backing store: hand over an exact copy instead.
      const raw = new Uint8Array(task.raw.byteLength);
      raw.set(task.raw);
      slot.worker.postMessage({ id: task.id, raw, opts: task.opts }, [raw.buffer]);
    }
  }

  /** The clocks start when a thread takes the message, not while it waits in line. */
  private watch(slot: Slot, task: Pending): void {
    const started = Date.now();
    const cpuStart = slot.statPath ? threadCpuMs(slot.statPath) : null;
    const wallLimit = cpuStart === null ? task.timeoutMs : task.timeoutMs * WALL_FACTOR;
    slot.timer = setInterval(
      () => {
        const wall = Date.now() - started;
        const cpuNow = cpuStart === null ? null : threadCpuMs(slot.statPath!);
        const cpu = cpuNow === null || cpuStart === null ? null : cpuNow - cpuStart;
        if (cpu !== null && cpu > task.timeoutMs) {
          this.fail(slot, new ParseFailedError(`parsing used more than ${task.timeoutMs} ms of CPU (${cpu} ms); stopped`, true));
        } else if (wall > wallLimit) {
          this.fail(slot, new ParseFailedError(`parsing took longer than ${wallLimit} ms; stopped`, true));
        }
      },
      Math.min(POLL_MS, Math.max(1, task.timeoutMs)),
    );
  }

  private addSlot(): Slot {
    const slot: Slot = { worker: spawnWorker(this.resourceLimitMb), ready: false, statPath: null, task: null, timer: null };
    slot.worker.unref();
    slot.worker.on(
      'message',
      (msg: { ready?: boolean; tid?: string | null; id?: number; ok?: boolean; result?: AnalyzedMessage; error?: string }) => {
        if (msg.ready) {
          const statPath = msg.tid && /^\d+$/.test(msg.tid) ? `/proc/self/task/${msg.tid}/stat` : null;
          slot.statPath = statPath && threadCpuMs(statPath) !== null ? statPath : null;
          slot.ready = true;
          this.dispatch();
          return;
        }
        if (msg.id === undefined || !slot.task || slot.task.id !== msg.id) return;
        const task = slot.task;
        this.release(slot);
        if (msg.ok) task.resolve(msg.result!);
        else task.reject(new ParseFailedError(msg.error ?? 'parse failed', false));
        this.dispatch();
      },
    );
    // A crash (out of memory under resourceLimits, a native fault) fails only the message it was working on.
    slot.worker.on('error', (err) => {
      if (slot.ready) return this.fail(slot, new ParseFailedError(`parser crashed: ${err.message}`, false));
      // A thread that cannot even start is our fault, not the message's: the jobs retry later.
      this.remove(slot);
      for (const t of this.queue.splice(0)) t.reject(new Error(`parse worker failed to start: ${err.message}`));
    });
    slot.worker.on('exit', () => {
      if (slot.task) this.fail(slot, new ParseFailedError('parser thread exited', false));
      else this.remove(slot);
    });
    this.slots.push(slot);
    return slot;
  }

  private release(slot: Slot): void {
    if (slot.timer) clearInterval(slot.timer);
    slot.timer = null;
    slot.task = null;
  }

  private remove(slot: Slot): void {
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
  }

  private fail(slot: Slot, err: Error): void {
    const task = slot.task;
    this.release(slot);
    this.remove(slot);
    void slot.worker.terminate();
    task?.reject(err);
    if (!this.closed) this.dispatch();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.queue.splice(0)) t.reject(new Error('parse pool closed'));
    await Promise.all(this.slots.splice(0).map((s) => s.worker.terminate()));
  }
}
