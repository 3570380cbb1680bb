import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { inject } from 'vitest';
import { NO_DNS } from './env.js';

export interface ReplylineProcess {
  child: ChildProcess;
  smtpPort?: number;
  httpPort?: number;
  stderr: () => string;
  logs: () => Array<Record<string, unknown>>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/**
 * Runs `src/main.ts` as its own process (as `npm start` does) and resolves
 * once it logged "replyline started", or rejects with its stderr if it exits first.
 */
export async function spawnReplyline(env: Record<string, string>, { expectStart = true } = {}): Promise<ReplylineProcess> {
  // The marker lets the global teardown kill children a crashed test worker left behind.
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', `--replyline-test-run=${inject('runPrefix')}`], {
    env: { ...process.env, LOG_LEVEL: 'info', DNS_SERVERS: NO_DNS, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const proc: ReplylineProcess = { child, stderr: () => stderr, logs: () => logs, exited };
  const started = new Promise<void>((resolve) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      logs.push(entry);
      if (entry.msg === 'smtp listening') proc.smtpPort = entry.port as number;
      if (entry.msg === 'portal listening') proc.httpPort = entry.port as number;
      if (entry.msg === 'replyline started') resolve();
    });
  });
  if (expectStart) {
    await Promise.race([
      started,
      exited.then((code) => {
        throw new Error(`replyline exited with ${code} before starting: ${stderr}`);
      }),
    ]);
  }
  return proc;
}
