import { SMTPServer } from 'smtp-server';
import { simpleParser, type ParsedMail } from 'mailparser';

/**
 * An in-process SMTP relay for tests: records the exact bytes it receives
 * and can be told to fail on purpose (a 4xx, a 5xx, or to be down).
 */
export interface ReceivedMail {
  raw: Buffer;
  mailFrom: string;
  rcptTo: string[];
}

export type SinkMode = { type: 'accept' } | { type: 'reject'; code: number; message: string };

export interface RelaySink {
  port: number;
  url: string;
  received: ReceivedMail[];
  mode: SinkMode;
  /** Messages larger than this are refused with 552 after DATA, like a relay with a size limit. */
  maxMessageBytes: number | null;
  /** Recipients refused at RCPT TO with this reply (a mailbox that does not exist, say). */
  rejectRecipients: Map<string, { code: number; message: string }>;
  /** Resolves with the first `count` mails matching `filter` (waits up to timeoutMs). */
  waitFor(filter: (m: ReceivedMail) => boolean, count?: number, timeoutMs?: number): Promise<ReceivedMail[]>;
  stop(): Promise<void>;
  /** Listens again on the same port (after stop), for outage tests. */
  restart(): Promise<void>;
}

function listen(server: SMTPServer, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      const addr = server.server.address();
      resolve(typeof addr === 'object' && addr ? addr.port : port);
    });
  });
}

export async function startRelaySink(port = 0): Promise<RelaySink> {
  const received: ReceivedMail[] = [];
  const waiters = new Set<() => void>();
  const sink = {} as RelaySink;
  sink.received = received;
  sink.mode = { type: 'accept' };
  sink.maxMessageBytes = null;
  sink.rejectRecipients = new Map();

  const make = () => {
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      logger: false,
      disableReverseLookup: true,
      // Pooled clients keep connections open; an outage test must not wait 30 s for them.
      closeTimeout: 100,
      onRcptTo(address, _session, callback) {
        const reject = sink.rejectRecipients.get(address.address.toLowerCase());
        if (reject) return callback(Object.assign(new Error(reject.message), { responseCode: reject.code }));
        callback();
      },
      onData(stream, session, callback) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const mode = sink.mode;
          const size = chunks.reduce((n, c) => n + c.length, 0);
          if (sink.maxMessageBytes !== null && size > sink.maxMessageBytes) {
            return callback(Object.assign(new Error('5.3.4 Message size exceeds fixed maximum message size'), { responseCode: 552 }));
          }
          if (mode.type === 'reject') {
            const err = Object.assign(new Error(mode.message), { responseCode: mode.code });
            return callback(err);
          }
          received.push({
            raw: Buffer.concat(chunks),
            mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            rcptTo: session.envelope.rcptTo.map((r) => r.address),
          });
          for (const w of waiters) w();
          callback();
        });
      },
    });
    // A client killed mid-session (fault tests kill replyline) resets its socket; that is not a sink failure.
    server.on('error', () => {});
    return server;
  };

  let server = make();
  const bound = await listen(server, port);
  sink.port = bound;
  sink.url = `smtp://127.0.0.1:${bound}`;
  sink.waitFor = (filter, count = 1, timeoutMs = 15_000) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const found = received.filter(filter);
        if (found.length >= count) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found.slice(0, count));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`relay sink: expected ${count} matching mail(s), got ${received.filter(filter).length} within ${timeoutMs} ms`));
      }, timeoutMs);
      if (!check()) waiters.add(check);
    });
  sink.stop = () => new Promise<void>((resolve) => server.close(() => resolve()));
  sink.restart = async () => {
    server = make();
    await listen(server, bound);
  };
  return sink;
}

export const to = (address: string) => (m: ReceivedMail) => m.rcptTo.includes(address);

export function parse(m: ReceivedMail): Promise<ParsedMail> {
  return simpleParser(m.raw, { skipImageLinks: true });
}

/** The raw header block (unfolded lines kept as sent), for byte-level assertions. */
export function rawHeaders(m: ReceivedMail): string {
  const text = m.raw.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  return end < 0 ? text : text.slice(0, end + 2);
}

export function header(m: ReceivedMail, name: string): string | undefined {
  const unfolded = rawHeaders(m).replace(/\r\n[ \t]+/g, ' ');
  const re = new RegExp(`^${name}:[ \\t]*(.*)$`, 'im');
  return re.exec(unfolded)?.[1]?.trim();
}
