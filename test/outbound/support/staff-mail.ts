import { generateKeyPairSync } from 'node:crypto';
import nodemailer from 'nodemailer';

/** A DKIM key pair generated for the test run, and its DNS TXT record. */
export function makeDkimKey() {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const p = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  return { privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), txt: `v=DKIM1; k=rsa; p=${p}` };
}

export interface BuildMail {
  from: string;
  to: string | string[];
  cc?: string | string[];
  subject?: string;
  text: string;
  replyTo?: string;
  inReplyTo?: string;
  references?: string[];
  headers?: Record<string, string>;
  dkim?: { domainName: string; keySelector: string; privateKey: string };
  attachments?: Array<{ filename: string; content: Buffer; contentType: string; cid?: string }>;
  html?: string;
}

/** The exact bytes a staff member's mail server would send, DKIM-signed when asked. */
export async function buildMail(m: BuildMail): Promise<Buffer> {
  const transport = nodemailer.createTransport({
    streamTransport: true,
    buffer: true,
    newline: 'windows',
    ...(m.dkim ? { dkim: m.dkim } : {}),
  });
  const info = await transport.sendMail({
    from: m.from,
    to: m.to,
    cc: m.cc,
    subject: m.subject ?? 'Re: test',
    text: m.text,
    html: m.html,
    attachments: m.attachments,
    replyTo: m.replyTo,
    inReplyTo: m.inReplyTo,
    references: m.references,
    headers: m.headers,
  });
  return info.message as Buffer;
}
