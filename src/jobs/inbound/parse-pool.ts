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
 * What is left here is small: spawn, ready handshake, a short line of
 * tasks per thread, terminate-and-replace on overrun, close.
 *
 * Each thread is handed up to THREAD_DEPTH messages and works through them
 * in order, so it never idles while the main thread, busy with SMTP and
 * SQL, gets round to handing it the next one: with one message at a time
 * the thread waited on the main thread for most of each message (bench at
 * 300 msg/s: 4.4 ms of wall time per message for about 1 ms of parsing).
 * A message's clock starts when the thread takes it: when it was handed to
 * an idle thread, or when the result before it arrived (an instant late by
 * the main thread's own delay, which only ever favours the message).
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
  /** In the thread's order: the first is the one it works on. */
  tasks: Pending[];
  timer: NodeJS.Timeout | null;
}

const WALL_FACTOR = 15;
/** Messages handed to one thread at once: the one it works on and those next in its line. */
export const THREAD_DEPTH = 4;
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
    this.forgetIfIdle(task.fairKey);
    return task;
  }

  /** Only senders with work queued or in a thread's line need a turn order; the map stays that small. */
  private forgetIfIdle(key: string): void {
    const has = (t: Pending) => t.fairKey === key;
    if (!this.queue.some(has) && !this.slots.some((s) => s.tasks.some(has))) this.lastServed.delete(key);
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot: Slot | null = null;
      for (const s of this.slots) if (s.ready && s.tasks.length < THREAD_DEPTH && (!slot || s.tasks.length < slot.tasks.length)) slot = s;
      if (!slot || slot.tasks.length > 0) {
        if (this.slots.length < this.size) this.addSlot();
        if (!slot) return;
      }
      const task = this.takeNext();
      slot.tasks.push(task);
      if (slot.tasks.length === 1) this.watch(slot);
      // A Buffer from pg is often a view into a larger socket buffer, and structured
      // cloning copies the whole backing store: hand over an exact copy instead.
      const raw = new Uint8Array(task.raw.byteLength);
      raw.set(task.raw);
      slot.worker.postMessage({ id: task.id, raw, opts: task.opts }, [raw.buffer]);
    }
  }

  /** The clocks of the slot's first message start when the thread takes it, not while it waits in line. */
  private watch(slot: Slot): void {
    const task = slot.tasks[0]!;
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
    const slot: Slot = { worker: spawnWorker(this.resourceLimitMb), ready: false, statPath: null, tasks: [], timer: null };
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
        if (msg.id === undefined || slot.tasks[0]?.id !== msg.id) return;
        const task = this.release(slot)!;
        this.forgetIfIdle(task.fairKey);
        if (slot.tasks.length > 0) this.watch(slot);
        if (msg.ok) task.resolve(msg.result!);
        else task.reject(new ParseFailedError(msg.error ?? 'parse failed', false));
        this.dispatch();
      },
    );
    // A crash (out of memory under resourceLimits, a native fault) fails only the message it was working on;
    // the ones next in its line go to another thread.
    slot.worker.on('error', (err) => {
      if (slot.ready) return this.fail(slot, new ParseFailedError(`parser crashed: ${err.message}`, false));
      // A thread that cannot even start is our fault, not the message's: the jobs retry later.
      this.remove(slot);
      for (const t of this.queue.splice(0)) t.reject(new Error(`parse worker failed to start: ${err.message}`));
    });
    slot.worker.on('exit', () => {
      if (slot.tasks.length > 0) this.fail(slot, new ParseFailedError('parser thread exited', false));
      else this.remove(slot);
    });
    this.slots.push(slot);
    return slot;
  }

  /** Stops the first message's clocks and takes it off the slot. */
  private release(slot: Slot): Pending | undefined {
    if (slot.timer) clearInterval(slot.timer);
    slot.timer = null;
    return slot.tasks.shift();
  }

  private remove(slot: Slot): void {
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
  }

  private fail(slot: Slot, err: Error): void {
    const task = this.release(slot);
    if (task) this.forgetIfIdle(task.fairKey);
    // Not started yet: back to the front of the line, for another thread.
    const waiting = slot.tasks.splice(0);
    if (this.closed) for (const t of waiting) t.reject(new Error('parse pool closed'));
    else this.queue.unshift(...waiting);
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
