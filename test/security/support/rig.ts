import { sql } from 'kysely';
import nodemailer from 'nodemailer';
import type Mail from 'nodemailer/lib/mailer';
import { hashPassword } from '../../../src/auth/password.js';
import type { Db, InboundMessageRow, UserRole } from '../../../src/db/database.js';
import { createUser } from '../../../src/db/queries/users.js';
import { queuedId, SmtpClient, waitProcessed } from '../../inbound/support/smtp.js';
import { startDnsServer, type TestDnsServer, type Zone } from '../../outbound/support/dns-server.js';
import { header, parse, startRelaySink, type ReceivedMail, type RelaySink } from '../../outbound/support/relay-sink.js';
import { startPortalApp, uniqueEmail, type PortalTestApp } from '../../portal/support.js';

/**
 * One replyline with every role (SMTP in, workers, portal) wired to test
 * doubles an attacker cannot see: a relay sink that records every byte we
 * send, and a DNS server for SPF/DKIM/DMARC. Attacks go in through the real
 * SMTP listener and the real portal; verdicts are read from the database and
 * from what the relay received.
 */
export interface Rig {
  app: PortalTestApp;
  db: Db;
  sink: RelaySink;
  dns: TestDnsServer;
  /** Portal origin (also PUBLIC_URL). */
  base: string;
  smtpPort: number;
  teardown(): Promise<void>;
}

export const SUPPORT = 'support@help.test';

/**
 * For tests whose subject is not the forged From: example.test (uniqueEmail's
 * domain) passes SPF from 127.0.0.1, so its customers' mail may add CCs.
 */
export const TRUSTED_CUSTOMERS: Zone = { 'example.test': { TXT: ['v=spf1 ip4:127.0.0.1 -all'] } };
export const PASSWORD = 'Correct-Horse-9';

export async function startRig(overrides: Record<string, string> = {}, opts: { zone?: Zone; sink?: RelaySink } = {}): Promise<Rig> {
  const dns = await startDnsServer(opts.zone ?? {});
  const sink = opts.sink ?? (await startRelaySink());
  const app = await startPortalApp({
    REPLYLINE_ROLES: 'all',
    OUTBOUND_SMTP_URL: sink.url,
    DNS_SERVERS: dns.server,
    MAIL_FROM: 'Help Desk <support@help.test>',
    ...overrides,
  });
  return {
    app,
    db: app.ctx.db,
    sink,
    dns,
    base: app.base,
    smtpPort: app.smtp!.port,
    async teardown() {
      await app.teardown();
      if (!opts.sink) await sink.stop();
      await dns.stop();
    },
  };
}

export interface BuildOptions extends Mail.Options {
  dkim?: { domainName: string; keySelector: string; privateKey: string };
}

/** The exact bytes a sending mail client would produce (CRLF, optional DKIM). */
export async function compose(mail: BuildOptions): Promise<Buffer> {
  const { dkim, ...rest } = mail;
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'windows', ...(dkim ? { dkim } : {}) });
  const info = await transport.sendMail(rest);
  return info.message as Buffer;
}

function addressOf(v: Mail.Options['from']): string {
  if (v && typeof v === 'object' && 'address' in v) return v.address ?? '';
  return String(v ?? '')
    .replace(/^.*<|>.*$/g, '')
    .trim();
}

/**
 * Sends bytes through replyline's SMTP listener like a sending MTA and waits
 * until the worker has decided (processed or held). Rejects with the SMTP
 * error (err.responseCode) when the listener refuses.
 */
export type SmtpTarget = Pick<Rig, 'smtpPort' | 'db'>;

export async function submitRaw(
  rig: SmtpTarget,
  raw: Buffer | string,
  envelope: { from: string; to: string[] },
): Promise<InboundMessageRow> {
  const client = await SmtpClient.connect(rig.smtpPort, { name: 'mx.sender.test' });
  let response: string;
  try {
    response = await client.send(envelope, raw);
  } finally {
    client.close();
  }
  return waitProcessed(rig.db, queuedId(response), 20_000);
}

/** Composes and submits; the envelope defaults to From → support@. */
export async function submit(rig: SmtpTarget, mail: BuildOptions, envelope?: { from?: string; to?: string[] }): Promise<InboundMessageRow> {
  const raw = await compose(mail);
  return submitRaw(rig, raw, { from: envelope?.from ?? addressOf(mail.from), to: envelope?.to ?? [SUPPORT] });
}

/** A user who can sign in to the portal. */
export async function makeUser(db: Db, opts: { email?: string; name?: string | null; role?: UserRole; password?: string } = {}) {
  const user = await createUser(db, {
    email: opts.email ?? uniqueEmail(opts.role ?? 'customer'),
    name: opts.name ?? null,
    role: opts.role ?? 'customer',
  });
  await setPassword(db, user.email, opts.password ?? PASSWORD);
  return user;
}

/** Gives an existing (e.g. implicit) account a password: these tests are about abuse, not the claim flow. */
export async function setPassword(db: Db, email: string, password = PASSWORD): Promise<void> {
  await db
    .updateTable('users')
    .set({ password_hash: await hashPassword(password), verified_at: sql`now()` as never })
    .where(sql<string>`lower(email)`, '=', email.toLowerCase())
    .execute();
}

/** Mail of one ticket: our Message-IDs carry the ticket id. */
export const ofTicket = (ticketId: number) => (m: ReceivedMail) => (header(m, 'Message-ID') ?? '').startsWith(`<rl.${ticketId}.`);
export const toAddress = (address: string) => (m: ReceivedMail) => m.rcptTo.includes(address.toLowerCase());

/** The per-recipient reply address from a mail we sent. */
export async function replyAddressOf(m: ReceivedMail): Promise<string> {
  const address = (await parse(m)).replyTo?.value[0]?.address;
  if (!address) throw new Error('mail has no Reply-To');
  return address;
}

/** A customer opens a ticket by mail; waits for the acknowledgement and (when staff exist) the staff notification. */
export async function openTicket(
  rig: Rig,
  opts: {
    email?: string;
    name?: string;
    subject?: string;
    text?: string;
    cc?: string[];
    attachments?: Mail.Attachment[];
    staff?: string[];
    expectAck?: boolean;
    dkim?: BuildOptions['dkim'];
  } = {},
) {
  const email = (opts.email ?? uniqueEmail('customer')).toLowerCase();
  const subject = opts.subject ?? `Printer on fire ${Date.now()}`;
  const messageId = `<open.${Math.random().toString(36).slice(2)}@customer.test>`;
  const inbound = await submit(rig, {
    from: { name: opts.name ?? 'Carol Customer', address: email },
    to: SUPPORT,
    cc: opts.cc,
    subject,
    text: opts.text ?? 'My printer is on fire. Please help.',
    attachments: opts.attachments,
    messageId,
    dkim: opts.dkim,
  });
  if (inbound.status !== 'processed' || !inbound.ticket_id)
    throw new Error(`ticket not opened: ${inbound.status} ${inbound.reason} ${inbound.error}`);
  const ticketId = inbound.ticket_id;
  const requester = await rig.db.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirstOrThrow();
  const [ack] = opts.expectAck === false ? [undefined] : await rig.sink.waitFor((m) => toAddress(email)(m) && ofTicket(ticketId)(m));
  const notifications: Record<string, ReceivedMail> = {};
  for (const staff of opts.staff ?? []) {
    const [n] = await rig.sink.waitFor((m) => toAddress(staff)(m) && ofTicket(ticketId)(m));
    notifications[staff] = n!;
  }
  return { ticketId, requester, email, subject, messageId, inbound, ack, notifications };
}

/** Everything an attack on a ticket could change, to compare before and after. */
export async function ticketState(db: Db, ticketId: number) {
  const ticket = await db
    .selectFrom('tickets')
    .select(['status', 'subject', 'requester_id', 'assignee_id'])
    .where('id', '=', ticketId)
    .executeTakeFirstOrThrow();
  const messages = await db
    .selectFrom('messages')
    .select(['id', 'visibility', 'author_id', 'body_text'])
    .where('ticket_id', '=', ticketId)
    .orderBy('id')
    .execute();
  const participants = await db
    .selectFrom('ticket_participants')
    .select(['user_id', 'role'])
    .where('ticket_id', '=', ticketId)
    .orderBy('user_id')
    .execute();
  const outbound = await db
    .selectFrom('outbound_mails')
    .select(['id', 'kind', 'recipient'])
    .where('ticket_id', '=', ticketId)
    .orderBy('id')
    .execute();
  return { ticket, messages, participants, outbound };
}

async function count(db: Db, table: 'inbound_messages' | 'outbound_mails', status: string): Promise<number> {
  const r = await db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('status', '=', status as never)
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/**
 * Waits until nothing is left to process or send on any of the rigs and
 * nothing changed for `quietMs`: only then is "no mail was sent" a fact.
 * Nudges the sweeper so a lost enqueue cannot pass for silence.
 */
export interface Settleable {
  db: Db;
  app: { workers?: { sweep(): Promise<unknown> } };
  sink?: { received: unknown[] };
}

export async function settle(
  rigs: Settleable[],
  { quietMs = 500, timeoutMs = 30_000, idle = (): boolean => true }: { quietMs?: number; timeoutMs?: number; idle?: () => boolean } = {},
): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last = '';
  let stableSince = Date.now();
  for (;;) {
    // Sampled before the counts: an answer the partner finishes meanwhile shows up in them.
    const partnerIdle = idle();
    const parts = await Promise.all(
      rigs.map(async (r) => {
        const pendingIn = await count(r.db, 'inbound_messages', 'received');
        const pendingOut = await count(r.db, 'outbound_mails', 'queued');
        const rows = await r.db
          .selectFrom('inbound_messages')
          .select((eb) => eb.fn.countAll<string>().as('n'))
          .executeTakeFirstOrThrow();
        const outRows = await r.db
          .selectFrom('outbound_mails')
          .select((eb) => eb.fn.countAll<string>().as('n'))
          .executeTakeFirstOrThrow();
        return {
          pending: pendingIn + pendingOut,
          state: `${pendingIn}/${pendingOut}/${rows.n}/${outRows.n}/${r.sink?.received.length ?? '-'}`,
        };
      }),
    );
    const state = parts.map((p) => p.state).join('|');
    // `idle` lets a test's own mail partner (an auto-responder mid-send) count as pending work.
    const pending = parts.reduce((n, p) => n + p.pending, 0) + (partnerIdle ? 0 : 1);
    if (state !== last) {
      last = state;
      stableSince = Date.now();
    } else if (pending === 0 && Date.now() - stableSince >= quietMs) {
      return;
    }
    if (Date.now() > end) throw new Error(`did not settle within ${timeoutMs} ms: ${state}`);
    if (pending > 0) for (const r of rigs) await r.app.workers?.sweep().catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
