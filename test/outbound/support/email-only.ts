import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { hashPassword } from '../../../src/auth/password.js';
import type { Locale } from '../../../src/db/database.js';
import { createUser } from '../../../src/db/queries/users.js';
import { startTestApp, type TestApp } from '../../support/app.js';
import { freePort } from '../../support/net.js';
import { startDnsServer, type TestDnsServer } from './dns-server.js';
import { flow } from './flow.js';
import { header, type ReceivedMail, type RelaySink, startRelaySink } from './relay-sink.js';
import { makeDkimKey } from './staff-mail.js';

/**
 * One complete replyline (SMTP in, worker, portal on a real port that is its
 * PUBLIC_URL) with a relay sink, a DNS server that authenticates corp.test's
 * DKIM-signed staff mail, and two staff members: Alice (English) and Bob (Japanese).
 */
export interface EmailOnlyRig {
  app: TestApp;
  sink: RelaySink;
  dns: TestDnsServer;
  base: string;
  alice: { id: number; email: string };
  bob: { id: number; email: string };
  flow: ReturnType<typeof flow>;
  stop(): Promise<void>;
}

export const PASSWORD = 'Printer-Safe-2024';

export async function startEmailOnlyRig(overrides: Record<string, string> = {}): Promise<EmailOnlyRig> {
  const key = makeDkimKey();
  const dns = await startDnsServer({
    'corp.test': { TXT: ['v=spf1 ip4:192.0.2.10 -all'] },
    'k1._domainkey.corp.test': { TXT: [key.txt] },
    '_dmarc.corp.test': { TXT: ['v=DMARC1; p=reject; adkim=r; aspf=r'] },
    // Customers write from 127.0.0.1 with SPF passing for their domain: authenticated, so their mail may add CCs.
    'customer.test': { TXT: ['v=spf1 ip4:127.0.0.1 -all'] },
  });
  const sink = await startRelaySink();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const app = await startTestApp({
    OUTBOUND_SMTP_URL: sink.url,
    DNS_SERVERS: dns.server,
    MAIL_FROM: 'Help Desk <support@help.test>',
    HTTP_LISTEN: `127.0.0.1:${port}`,
    PUBLIC_URL: base,
    PORTAL_RESPONSE_FLOOR_MS: '50',
    // These tests are about what each mail carries; who owns a ticket is tested in staff-queue.test.ts.
    AUTO_ASSIGN_FIRST_REPLIER: 'false',
    ...overrides,
  });
  const a = await createUser(app.ctx.db, { email: 'alice@corp.test', name: 'Alice Agent', role: 'staff', locale: 'en' });
  const b = await createUser(app.ctx.db, { email: 'bob@corp.test', name: 'Bob Tanaka', role: 'staff', locale: 'ja' });
  const dkim = { domainName: 'corp.test', keySelector: 'k1', privateKey: key.privateKey };
  const rig: EmailOnlyRig = {
    app,
    sink,
    dns,
    base,
    alice: { id: a.id, email: a.email },
    bob: { id: b.id, email: b.email },
    flow: flow(() => ({ app, sink, staffEmail: a.email, dkim })),
    async stop() {
      await app.teardown();
      await sink.stop();
      await dns.stop();
    },
  };
  return rig;
}

export const customerAddress = (tag: string) => `${tag}-${randomBytes(3).toString('hex')}@customer.test`;

/** Gives an account a password (as the set-password flow would) so a test can sign in. */
export async function givePassword(rig: EmailOnlyRig, email: string, locale?: Locale): Promise<void> {
  await rig.app.ctx.db
    .updateTable('users')
    .set({ password_hash: await hashPassword(PASSWORD), verified_at: sql`now()` as never, ...(locale ? { locale } : {}) })
    .where(sql<string>`lower(email)`, '=', email.toLowerCase())
    .execute();
}

/** Mail of one ticket (our Message-IDs name it). */
export const ofTicket = (ticketId: number) => (m: ReceivedMail) => (header(m, 'Message-ID') ?? '').startsWith(`<rl.${ticketId}.`);
