import { randomBytes } from 'node:crypto';
import MailComposer from 'nodemailer/lib/mail-composer';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type Mail from 'nodemailer/lib/mailer';
import type { Db, InboundMessageRow } from '../../../src/db/database.js';

export const uid = () => randomBytes(4).toString('hex');

/** A real SMTP client session (nodemailer's SMTPConnection) that can send several messages. */
export class SmtpClient {
  readonly conn: SMTPConnection;
  private constructor(conn: SMTPConnection) {
    this.conn = conn;
  }

  static async connect(port: number, opts: Partial<SMTPConnection.Options> = {}): Promise<SmtpClient> {
    const conn = new SMTPConnection({ host: '127.0.0.1', port, ignoreTLS: true, connectionTimeout: 10_000, ...opts });
    conn.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      conn.once('error', reject);
      conn.connect(() => {
        conn.off('error', reject);
        resolve();
      });
    });
    return new SmtpClient(conn);
  }

  /** Sends one message; resolves with the server's final response, rejects with the SMTP error (err.responseCode). */
  send(envelope: { from: string; to: string[]; size?: number }, raw: Buffer | string): Promise<string> {
    return new Promise((resolve, reject) => {
      this.conn.send(envelope, raw, (err, info) => (err ? reject(err) : resolve(info.response)));
    });
  }

  /** Resets the session so the next send starts clean after a rejected transaction. */
  reset(): Promise<void> {
    return new Promise((resolve, reject) => this.conn.reset((err) => (err ? reject(err) : resolve())));
  }

  close(): void {
    this.conn.quit();
  }
}

export async function sendOnce(port: number, envelope: { from: string; to: string[] }, raw: Buffer | string): Promise<string> {
  const c = await SmtpClient.connect(port);
  try {
    return await c.send(envelope, raw);
  } finally {
    c.close();
  }
}

/** "250 2.0.0 Ok: queued as 42" → 42 */
export function queuedId(response: string): number {
  const m = /queued as (\d+)/.exec(response);
  if (!m) throw new Error(`no queue id in "${response}"`);
  return Number(m[1]);
}

export async function buildMail(options: Mail.Options): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    new MailComposer(options).compile().build((err, msg) => (err ? reject(err) : resolve(msg)));
  });
}

/** Polls until the inbound row left `received` (the worker processed it). */
export async function waitProcessed(db: Db, id: number, timeoutMs = 15_000): Promise<InboundMessageRow> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = await db.selectFrom('inbound_messages').selectAll().where('id', '=', id).executeTakeFirst();
    if (row && row.status !== 'received') return row;
    if (Date.now() > deadline) throw new Error(`inbound ${id} still ${row?.status ?? 'missing'} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Sends through the listener and waits for the worker: the row as processed. */
export async function deliver(
  db: Db,
  port: number,
  mail: Mail.Options,
  envelope?: { from: string; to: string[] },
): Promise<InboundMessageRow> {
  const raw = await buildMail(mail);
  const from = envelope?.from ?? String((mail.from as string | undefined) ?? '').replace(/^.*<|>.*$/g, '');
  const to = envelope?.to ?? ['support@help.test'];
  const response = await sendOnce(port, { from, to }, raw);
  return waitProcessed(db, queuedId(response));
}

/** A scripted raw SMTP dialogue: sends each command after the previous reply; returns every reply. */
export async function rawDialogue(port: number, commands: string[]): Promise<string[]> {
  const { connect } = await import('node:net');
  const socket = connect(port, '127.0.0.1');
  const replies: string[] = [];
  let buffer = '';
  let waiting: ((reply: string) => void) | null = null;
  socket.on('data', (d) => {
    buffer += d.toString('latin1');
    // A reply ends with a line "NNN text" (no dash after the code).
    const m = /(^|\r\n)(\d{3}) [^\r\n]*\r\n$/.exec(buffer);
    if (m && waiting) {
      const reply = buffer;
      buffer = '';
      const w = waiting;
      waiting = null;
      w(reply.trim());
    }
  });
  const next = () => new Promise<string>((resolve) => (waiting = resolve));
  try {
    replies.push(await next()); // greeting
    for (const c of commands) {
      const p = next();
      socket.write(`${c}\r\n`);
      replies.push(await p);
    }
  } finally {
    socket.destroy();
  }
  return replies;
}

/** A message whose parse needs well over 100 ms of CPU (a 12 MB base64 attachment to decode and hash). */
export function cpuHeavyMail(from: string): Buffer {
  const payload = Buffer.alloc(9 * 1024 * 1024, 0x41)
    .toString('base64')
    .replace(/.{76}/g, '$&\r\n');
  return Buffer.from(
    `From: ${from}\r\nTo: support@help.test\r\nSubject: heavy\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="h"\r\n\r\n` +
      `--h\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--h\r\nContent-Type: application/octet-stream; name="a.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n${payload}\r\n--h--\r\n`,
  );
}
