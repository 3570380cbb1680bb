import { fork, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { SMTPServer } from 'smtp-server';

/**
 * The draining relay sink for bench:outbound, run as a child process so its
 * SMTP parsing never competes with the measured process's event loop. It
 * reports each message's arrival time, In-Reply-To and Auto-Submitted.
 */

export const now = () => performance.timeOrigin + performance.now();

function runSink(): void {
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    disableReverseLookup: true,
    maxClients: 1000,
    onData(stream, _session, callback) {
      let head = '';
      stream.on('data', (c: Buffer) => {
        if (head.length < 8192) head += c.toString('latin1');
      });
      stream.on('end', () => {
        const unfolded = head.slice(0, head.indexOf('\r\n\r\n') >>> 0).replace(/\r\n[ \t]+/g, ' ');
        const irt = /^In-Reply-To:\s*<([^>]+)>/im.exec(unfolded)?.[1] ?? null;
        const kind = /^Auto-Submitted:\s*(\S+)/im.exec(unfolded)?.[1] ?? null;
        process.send!({ t: now(), irt, kind });
        callback();
      });
    },
  });
  server.listen(0, '127.0.0.1', () => {
    const addr = server.server.address();
    process.send!({ port: typeof addr === 'object' && addr ? addr.port : 0 });
  });
}

export interface SinkEvent {
  t: number;
  irt: string | null;
  kind: string | null;
}

export interface Sink {
  url: string;
  child: ChildProcess;
  events: SinkEvent[];
  waitCount(n: number, timeoutMs: number): Promise<void>;
}

export async function startSink(): Promise<Sink> {
  const child = fork(fileURLToPath(import.meta.url), ['--sink'], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const events: SinkEvent[] = [];
  let waiter: (() => void) | null = null;
  const port = await new Promise<number>((resolve) => {
    child.on('message', (m: { port?: number } & SinkEvent) => {
      if (m.port !== undefined) return resolve(m.port);
      events.push(m);
      waiter?.();
    });
  });
  return {
    url: `smtp://127.0.0.1:${port}`,
    child,
    events,
    waitCount: (n, timeoutMs) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`sink got ${events.length}/${n} within ${timeoutMs} ms`)), timeoutMs);
        waiter = () => {
          if (events.length >= n) {
            clearTimeout(timer);
            waiter = null;
            resolve();
          }
        };
        waiter();
      }),
  };
}

if (process.argv.includes('--sink')) runSink();
