import nodemailer from 'nodemailer';
import MailComposer from 'nodemailer/lib/mail-composer';
import type { Config } from '../config.js';
import type { ComposedMail } from './compose.js';

/**
 * One pooled SMTP transport per app context (src/context.ts), closed with
 * it: connections to the relay are reused across jobs (a TCP + EHLO (+ TLS)
 * handshake per mail would dominate the cost of sending). Creating it opens
 * nothing; the first mail does.
 */

type TransportConfig = Pick<Config, 'OUTBOUND_SMTP_URL' | 'OUTBOUND_CONCURRENCY' | 'MAIL_DOMAIN'>;

export function createTransport(config: TransportConfig) {
  return nodemailer.createTransport({
    url: config.OUTBOUND_SMTP_URL,
    pool: true,
    maxConnections: config.OUTBOUND_CONCURRENCY,
    maxMessages: 1000,
    // A relay that hangs must turn into a retry, not a stuck worker; the
    // socket timeout stays under BullMQ's 30 s job lock so a slow send is
    // never handed to a second worker as "stalled" while it still runs.
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 25_000,
    // EHLO as our mail domain, not the container's random hostname.
    name: config.MAIL_DOMAIN,
  });
}

export type Transport = ReturnType<typeof createTransport>;

export interface SendResult {
  accepted: string[];
  rejected: string[];
  response: string;
}

/** Sends a composed mail; `contents` holds the bytes of its files (a file whose row vanished is left out). */
export async function sendComposed(
  transport: Transport,
  mail: ComposedMail,
  contents: ReadonlyMap<number, Buffer> = new Map(),
): Promise<SendResult> {
  const attachments = mail.files.flatMap((f) => {
    const content = contents.get(f.attachmentId);
    if (!content) return [];
    return [
      {
        filename: f.filename,
        content,
        contentType: f.contentType,
        ...(f.cid ? { cid: f.cid, contentDisposition: 'inline' as const } : {}),
      },
    ];
  });
  const message = await new MailComposer({
    from: mail.from,
    to: mail.to,
    replyTo: mail.replyTo,
    subject: mail.subject,
    text: mail.text,
    html: mail.html,
    messageId: mail.messageId,
    inReplyTo: mail.inReplyTo,
    references: mail.references,
    headers: mail.headers,
    attachments,
    // Everything we send is rendered in memory: nodemailer must never read a file or fetch a URL for us.
    disableFileAccess: true,
    disableUrlAccess: true,
  })
    .compile()
    .build();
  // Built whole first and handed over as one Buffer: the relay connection then writes the message in one
  // piece instead of one socket write per MIME line, a large share of a send's CPU on a small machine.
  const info = await transport.sendMail({ raw: message, envelope: mail.envelope, messageId: mail.messageId });
  const asStrings = (list: unknown[] | undefined) =>
    (list ?? []).map((a) => (typeof a === 'string' ? a : String((a as { address?: string }).address)));
  return { accepted: asStrings(info.accepted), rejected: asStrings(info.rejected), response: String(info.response ?? '') };
}
