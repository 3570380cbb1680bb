import { readlinkSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { analyzeMessage, type AnalyzeOptions } from './analyze.js';

/**
 * Parse worker: messages one at a time, in the order they were handed over,
 * each result or error back to the pool. The pool terminates this thread
 * when a message takes too long, which is the only reliable way to stop a
 * regular expression that backtracks. A message handed over while another
 * is being parsed waits here: the pool times each from when its turn comes.
 */
interface Task {
  id: number;
  raw: Uint8Array;
  opts: AnalyzeOptions;
}

const line: Task[] = [];

async function work(): Promise<void> {
  while (line.length > 0) {
    const task = line[0]!;
    const raw = Buffer.from(task.raw.buffer, task.raw.byteOffset, task.raw.byteLength);
    try {
      parentPort!.postMessage({ id: task.id, ok: true, result: await analyzeMessage(raw, task.opts) });
    } catch (err) {
      parentPort!.postMessage({ id: task.id, ok: false, error: err instanceof Error ? err.message : String(err) });
    }
    line.shift();
  }
}

parentPort!.on('message', (task: Task) => {
  line.push(task);
  if (line.length === 1) void work();
});
/** This thread's Linux task id, so the pool can read the thread's own CPU time from /proc. */
function threadId(): string | null {
  try {
    return readlinkSync('/proc/thread-self').split('/').pop() ?? null;
  } catch {
    return null;
  }
}

parentPort!.postMessage({ ready: true, tid: threadId() });
