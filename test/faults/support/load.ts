import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';

/**
 * A load generator that behaves like a sending MTA: each message is retried
 * after a 4xx or a broken connection until it gets 250 (or a 5xx, final), on
 * a fixed number of reused connections. It records every reply so fault
 * tests can count exactly what the client was told.
 */
export interface LoadMessage {
  index: number;
  from: string;
  to: string[];
  raw: Buffer;
}

export interface LoadOutcome {
  /** Final reply per message index ("250 …", "5xx …"), missing if never finished. */
  final: Map<number, string>;
  /** Every reply seen, in order, with the time it arrived. */
  replies: Array<{ index: number; at: number; reply: string }>;
  /** Connection-level failures (refused, reset, timed out). */
  connectionErrors: number;
}

function connect(port: number): Promise<SMTPConnection> {
  return new Promise((resolve, reject) => {
    const conn = new SMTPConnection({
      host: '127.0.0.1',
      port,
      ignoreTLS: true,
      connectionTimeout: 5_000,
      socketTimeout: 15_000,
      greetingTimeout: 5_000,
    });
    // Errors after the first (a reset during QUIT, say) must not surface as unhandled.
    conn.on('error', () => {});
    conn.once('error', reject);
    conn.connect(() => {
      conn.removeListener('error', reject);
      resolve(conn);
    });
  });
}

function sendOn(conn: SMTPConnection, m: LoadMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    conn.send({ from: m.from, to: m.to }, m.raw, (err, info) => {
      if (err) {
        const code = (err as { responseCode?: number }).responseCode;
        // An SMTP reply (4xx/5xx) resolves; only a broken connection rejects.
        if (code) {
          const text = (err as { response?: string }).response ?? err.message;
          resolve(text.startsWith(String(code)) ? text : `${code} ${text}`);
        } else reject(err);
      } else resolve(info.response);
    });
  });
}

export function newOutcome(): LoadOutcome {
  return { final: new Map(), replies: [], connectionErrors: 0 };
}

/** Resolves once `count` messages have their 250 (polling the live outcome). */
export async function untilAcked(outcome: LoadOutcome, count: number): Promise<void> {
  while ([...outcome.final.values()].filter((r) => r.startsWith('250')).length < count) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function runLoad(opts: {
  port: () => number;
  messages: LoadMessage[];
  connections: number;
  /** Give up retrying a message after this long (ms). */
  deadlineMs: number;
  retryDelayMs?: number;
  /** Live view of the run, e.g. to inject a fault after the n-th 250. */
  outcome?: LoadOutcome;
}): Promise<LoadOutcome> {
  const outcome: LoadOutcome = opts.outcome ?? newOutcome();
  const queue = [...opts.messages];
  const deadline = Date.now() + opts.deadlineMs;
  const retryDelay = opts.retryDelayMs ?? 200;

  async function lane(): Promise<void> {
    let conn: SMTPConnection | null = null;
    let sentOnConn = 0;
    for (;;) {
      const m = queue.shift();
      if (!m) break;
      let done = false;
      while (!done && Date.now() < deadline) {
        try {
          if (!conn) {
            conn = await connect(opts.port());
            sentOnConn = 0;
          }
          const reply = await sendOn(conn, m);
          outcome.replies.push({ index: m.index, at: Date.now(), reply });
          sentOnConn++;
          if (reply.startsWith('2') || reply.startsWith('5')) {
            outcome.final.set(m.index, reply);
            done = true;
          } else {
            // 4xx: the server asked us to come back later, on a fresh session.
            conn.close();
            conn = null;
            await new Promise((r) => setTimeout(r, retryDelay));
          }
        } catch {
          outcome.connectionErrors++;
          conn?.close();
          conn = null;
          await new Promise((r) => setTimeout(r, retryDelay));
        }
        // Reuse connections, but not forever: smtp-server limits nothing here, real MTAs cap it.
        if (conn && sentOnConn >= 100) {
          conn.quit();
          conn = null;
        }
      }
      if (!done) queue.length = 0; // deadline passed: stop this lane
    }
    conn?.quit();
  }

  await Promise.all(Array.from({ length: opts.connections }, () => lane()));
  return outcome;
}

/** A small, unique, realistic message; `tag` makes the run's rows findable. */
export function loadMessage(index: number, tag: string): LoadMessage {
  const from = `load-${tag}-${index}@customer.example`;
  const raw = Buffer.from(
    [
      `From: Load ${index} <${from}>`,
      'To: support@help.test',
      `Subject: ${tag} message ${index}`,
      `Message-ID: <${tag}.${index}@customer.example>`,
      `Date: ${new Date().toUTCString()}`,
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      '',
      `Hello, this is message ${index} of run ${tag}.`,
      'x'.repeat(400),
      '',
    ].join('\r\n'),
  );
  return { index, from, to: ['support@help.test'], raw };
}
