import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import nodemailer from 'nodemailer';
import { now } from './outbound-sink.js';

/**
 * The inbound load generator for bench:outbound, in its own process so its
 * SMTP client work never shares an event loop with the replyline it
 * measures. Open loop: mails go out on schedule whether or not replyline
 * keeps up. Reports each accepted Message-ID with the time of its 250.
 */

interface LoadResult {
  accepted: Array<[string, number]>;
  rejected: number;
  offered: number;
}

async function runLoad(port: number, tag: string, rate: number, total: number): Promise<LoadResult> {
  const client = nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    pool: true,
    maxConnections: 10,
    maxMessages: 100_000,
    ignoreTLS: true,
    name: 'load.test',
  });
  const accepted: Array<[string, number]> = [];
  const body = 'Hello,\n\nmy printer shows error E-42 since this morning. I tried restarting it twice.\n\nRegards\n'.repeat(8);
  let rejected = 0;
  const start = now();
  const sends: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const wait = start + (i * 1000) / rate - now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const messageId = `${tag}.${i}.${randomBytes(4).toString('hex')}@senders.test`;
    sends.push(
      client
        .sendMail({
          from: `${tag}${i}@senders.test`,
          to: 'support@bench.test',
          subject: `Printer error ${i}`,
          text: body,
          messageId: `<${messageId}>`,
        })
        .then(() => void accepted.push([messageId.toLowerCase(), now()]))
        .catch(() => void rejected++),
    );
  }
  await Promise.all(sends);
  const offered = total / ((now() - start) / 1000);
  client.close();
  return { accepted, rejected, offered };
}

/** Runs one load in a child process; resolves with Message-ID → time of the 250. */
export function offerLoad(
  port: number,
  tag: string,
  rate: number,
  total: number,
): Promise<{ accepted: Map<string, number>; rejected: number; offered: number }> {
  const child = fork(fileURLToPath(import.meta.url), ['--load', String(port), tag, String(rate), String(total)], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (m: LoadResult) => {
      resolve({ accepted: new Map(m.accepted), rejected: m.rejected, offered: m.offered });
      child.kill();
    });
    child.once('exit', (code) => reject(new Error(`load generator exited with ${code}`)));
  });
}

if (process.argv[2] === '--load') {
  const [port, tag, rate, total] = process.argv.slice(3);
  runLoad(Number(port), tag!, Number(rate), Number(total)).then(
    (r) => process.send!(r, () => process.exit(0)),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
