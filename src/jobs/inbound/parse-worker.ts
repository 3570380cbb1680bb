import { readlinkSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { analyzeMessage, type AnalyzeOptions } from './analyze.js';

/**
 * Parse worker: one message at a time, result or error back to the pool.
 * The pool terminates this thread when a message takes too long, which is
 * the only reliable way to stop a regular expression that backtracks.
 */
interface Task {
  id: number;
  raw: Uint8Array;
  opts: AnalyzeOptions;
}

parentPort!.on('message', (task: Task) => {
  const raw = Buffer.from(task.raw.buffer, task.raw.byteOffset, task.raw.byteLength);
  analyzeMessage(raw, task.opts).then(
    (result) => parentPort!.postMessage({ id: task.id, ok: true, result }),
    (err: unknown) => parentPort!.postMessage({ id: task.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
  );
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
