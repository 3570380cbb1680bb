import nodemailer from 'nodemailer';
import type { Db } from '../../../src/db/database.js';

/** Delivers exact bytes to replyline's SMTP listener, like a sending MTA would. */
export async function deliverRaw(port: number, raw: Buffer, envelope: { from: string; to: string[] }): Promise<void> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, name: 'mx.sender.test' });
  try {
    await t.sendMail({ envelope, raw });
  } finally {
    t.close();
  }
}

/** Waits until the inbound message with this Message-ID has been processed or held. */
export async function waitInbound(db: Db, messageId: string, timeoutMs = 15_000) {
  const end = Date.now() + timeoutMs;
  const bare = messageId.replace(/^<|>$/g, '');
  for (;;) {
    const row = await db
      .selectFrom('inbound_messages')
      .select(['id', 'status', 'reason', 'error', 'ticket_id', 'auth'])
      .where('header_message_id', 'in', [bare, `<${bare}>`])
      .where('status', '<>', 'received')
      .executeTakeFirst();
    if (row) return row;
    if (Date.now() > end) throw new Error(`inbound message ${messageId} not processed within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
