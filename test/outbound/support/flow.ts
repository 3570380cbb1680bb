import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import type { TestApp } from '../../support/app.js';
import { header, parse, to, type ReceivedMail, type RelaySink } from './relay-sink.js';
import { deliverRaw, waitInbound } from './smtp-client.js';
import { buildMail, type BuildMail } from './staff-mail.js';

export const mid = (tag: string) => `${tag}.${randomBytes(5).toString('hex')}@mail.test`;
export const bare = (v: string | undefined) => (v ?? '').replace(/^<|>$/g, '');

export interface DkimSigner {
  domainName: string;
  keySelector: string;
  privateKey: string;
}

/** Customer and staff mail against one running replyline and its relay sink. */
export function flow(env: () => { app: TestApp; sink: RelaySink; staffEmail: string; dkim: DkimSigner | undefined }) {
  /** A customer opens a ticket by mail; returns what staff and customer received. */
  async function openTicket(customer: string, subject: string) {
    const customerMid = mid('cust');
    const raw = await buildMail({
      from: `Carol <${customer}>`,
      to: 'support@help.test',
      subject,
      text: 'My printer is on fire.\nPlease help.',
      headers: { 'Message-ID': `<${customerMid}>` },
    });
    await deliverRaw(env().app.smtp!.port, raw, { from: customer, to: ['support@help.test'] });
    const inbound = await waitInbound(env().app.ctx.db, customerMid);
    expect(inbound.status).toBe('processed');
    const ticketId = inbound.ticket_id!;
    const byTicket = (m: ReceivedMail) => (header(m, 'Message-ID') ?? '').startsWith(`<rl.${ticketId}.`);
    const [ack] = await env().sink.waitFor((m) => to(customer)(m) && byTicket(m));
    const [note] = await env().sink.waitFor((m) => to(env().staffEmail)(m) && byTicket(m));
    return { ticketId, customerMid, ack: ack!, notification: note!, byTicket };
  }

  /** Alice answers a notification from her own mail client: quoted history below, commands on top. */
  async function staffAnswers(
    notification: ReceivedMail,
    body: string,
    opts: {
      from?: string;
      to?: string;
      rcpt?: string;
      signWith?: DkimSigner | null;
      mailFrom?: string;
      headers?: Record<string, string>;
      replyTo?: string;
      attachments?: BuildMail['attachments'];
    } = {},
  ) {
    const parsed = await parse(notification);
    const replyTo = parsed.replyTo!.value[0]!.address!;
    const answerMid = mid('staff');
    const quoted = (parsed.text ?? '')
      .split('\n')
      .map((l) => `> ${l}`)
      .join('\n');
    const raw = await buildMail({
      from: opts.from ?? 'Alice Agent <alice@corp.test>',
      to: opts.to ?? replyTo,
      subject: `Re: ${parsed.subject}`,
      text: `${body}\n\nOn Monday, Help Desk wrote:\n${quoted}`,
      inReplyTo: header(notification, 'Message-ID'),
      references: [header(notification, 'Message-ID')!],
      replyTo: opts.replyTo,
      attachments: opts.attachments,
      headers: { 'Message-ID': `<${answerMid}>`, ...opts.headers },
      dkim: opts.signWith === null ? undefined : (opts.signWith ?? env().dkim),
    });
    await deliverRaw(env().app.smtp!.port, raw, { from: opts.mailFrom ?? 'alice@corp.test', to: [opts.rcpt ?? replyTo] });
    return { answerMid, inbound: await waitInbound(env().app.ctx.db, answerMid), replyTo };
  }

  async function ticket(id: number) {
    return env().app.ctx.db.selectFrom('tickets').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  }
  async function messages(ticketId: number) {
    return env()
      .app.ctx.db.selectFrom('messages')
      .select(['visibility', 'body_text', 'author_id'])
      .where('ticket_id', '=', ticketId)
      .orderBy('id')
      .execute();
  }

  return { openTicket, staffAnswers, ticket, messages };
}
