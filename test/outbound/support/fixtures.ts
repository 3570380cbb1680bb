import { randomBytes } from 'node:crypto';
import type { AppContext } from '../../../src/context.js';
import type { Db, Locale } from '../../../src/db/database.js';
import { insertInboundMessage } from '../../../src/db/queries/inbound-messages.js';
import { addAttachment } from '../../../src/db/queries/attachments.js';
import { addMessage } from '../../../src/db/queries/messages.js';
import { addParticipant } from '../../../src/db/queries/ticket-participants.js';
import { createTicket } from '../../../src/db/queries/tickets.js';
import { createUser, ensureUser } from '../../../src/db/queries/users.js';
import { enqueueOutboundAfterCommit } from '../../../src/jobs/send-mail.js';
import { queueTicketMails, type TicketEvent } from '../../../src/mail/notify.js';

export const uid = () => randomBytes(4).toString('hex');

export async function makeStaff(db: Db, opts: { name?: string; locale?: Locale; email?: string } = {}) {
  return createUser(db, {
    email: opts.email ?? `agent-${uid()}@staff.example`,
    name: opts.name ?? 'Agent Smith',
    role: 'staff',
    locale: opts.locale ?? 'en',
  });
}

export interface SeededTicket {
  ticketId: number;
  messageId: number;
  customer: { id: number; email: string };
  inboundMessageId: string;
}

/** A ticket as the inbound side would leave it: requester, first message with its Message-ID. */
export async function seedTicket(
  db: Db,
  opts: { email?: string; name?: string | null; locale?: Locale; subject?: string; body?: string; attachments?: string[] } = {},
): Promise<SeededTicket> {
  const email = opts.email ?? `customer-${uid()}@example.com`;
  const { user } = await ensureUser(db, {
    email,
    name: opts.name === undefined ? 'Carol Customer' : opts.name,
    locale: opts.locale ?? 'en',
  });
  const ticket = await createTicket(db, { subject: opts.subject ?? 'Printer on fire', requesterId: user.id, via: 'email' });
  const inboundMessageId = `Orig.${uid()}@Example.COM`;
  // The inbound side keeps the header's original spelling on the raw row; messages store it lower-cased.
  const inbound = await insertInboundMessage(db, Buffer.from('x'), {
    mailFrom: email,
    rcptTo: ['support@help.test'],
    clientAddress: '127.0.0.1',
    helo: 'x',
    tls: false,
  });
  await db
    .updateTable('inbound_messages')
    .set({ header_message_id: `<${inboundMessageId}>`, status: 'processed' })
    .where('id', '=', inbound)
    .execute();
  const msg = await addMessage(db, {
    inboundMessageId: inbound,
    ticketId: ticket.id,
    authorId: user.id,
    visibility: 'public',
    via: 'email',
    bodyText: opts.body ?? 'My printer is on fire. Please help.',
    messageId: inboundMessageId,
  });
  for (const filename of opts.attachments ?? []) {
    await addAttachment(db, { messageId: msg.id, filename, contentType: 'application/pdf', content: Buffer.alloc(2048, 1), sha256: 'x' });
  }
  return { ticketId: ticket.id, messageId: msg.id, customer: { id: user.id, email }, inboundMessageId };
}

export async function addCc(db: Db, ticketId: number, email: string, locale: Locale = 'en') {
  const { user } = await ensureUser(db, { email, locale });
  await addParticipant(db, ticketId, user.id, 'cc');
  return user;
}

/** Writes the outbox rows for an event in one transaction and enqueues them, like the inbound job does. */
export async function notify(ctx: AppContext, event: TicketEvent): Promise<number[]> {
  const ids = await ctx.db.transaction().execute((trx) => queueTicketMails(trx, ctx.config, event));
  await enqueueOutboundAfterCommit(ctx, ids);
  return ids;
}

export async function staffReply(db: Db, ticketId: number, staffId: number, body: string, visibility: 'public' | 'internal' = 'public') {
  return addMessage(db, {
    ticketId,
    authorId: staffId,
    visibility,
    via: 'email',
    bodyText: body,
    messageId: `staff.${uid()}@staff.example`,
  });
}

export async function outboundRow(db: Db, id: number) {
  return db.selectFrom('outbound_mails').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
}

export async function waitForRow(db: Db, id: number, statuses: string[], timeoutMs = 15_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const row = await outboundRow(db, id);
    if (statuses.includes(row.status)) return row;
    if (Date.now() > end)
      throw new Error(`outbound ${id} still ${row.status} (wanted ${statuses.join('|')}); last_error=${row.last_error}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
