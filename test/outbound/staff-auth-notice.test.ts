import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp } from '../../src/app.js';
import { createUser } from '../../src/db/queries/users.js';
import { createTestDatabase, testConfig } from '../support/env.js';
import type { TestApp } from '../support/app.js';
import { startDnsServer, type TestDnsServer } from './support/dns-server.js';
import { header, parse, startRelaySink, to, type ReceivedMail, type RelaySink } from './support/relay-sink.js';
import { makeDkimKey } from './support/staff-mail.js';
import { flow } from './support/flow.js';

/**
 * A staff reply refused by STAFF_AUTH=dmarc used to vanish: held as
 * auth_failed with nothing at warn level and no word to the agent. Now the
 * operator's log says why, and the staff account (its stored address only)
 * gets a short notice — at most once an hour, with nothing of the ticket.
 */
const key = makeDkimKey();
let dns: TestDnsServer;
let sink: RelaySink;
let app: TestApp;
const logLines: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  dns = await startDnsServer({
    // Staff mail must come from 192.0.2.10; the tests deliver from 127.0.0.1 without a signature.
    'corp.test': { TXT: ['v=spf1 ip4:192.0.2.10 -all'] },
    'k1._domainkey.corp.test': { TXT: [key.txt] },
    '_dmarc.corp.test': { TXT: ['v=DMARC1; p=reject; adkim=r; aspf=r'] },
  });
  sink = await startRelaySink();
  const database = await createTestDatabase();
  const log = pino({ level: 'warn' }, new Writable({ write: (chunk, _enc, done) => (logLines.push(JSON.parse(String(chunk))), done()) }));
  const running = await startApp(
    testConfig(database.url, { OUTBOUND_SMTP_URL: sink.url, DNS_SERVERS: dns.server, STAFF_AUTH: 'dmarc' }),
    log,
  );
  app = Object.assign(running, { databaseUrl: database.url, teardown: async () => (await running.stop(), await database.drop()) });
  await createUser(app.ctx.db, { email: 'alice@corp.test', name: 'Alice Agent', role: 'staff' });
  await createUser(app.ctx.db, { email: 'kenji@corp.test', name: '健二', role: 'staff', locale: 'ja' });
});
afterAll(async () => {
  await app?.teardown();
  await sink?.stop();
  await dns?.stop();
});

const { openTicket, staffAnswers } = flow(() => ({ app, sink, staffEmail: 'alice@corp.test', dkim: undefined }));
/** Staff only get ticket mail and these notices; a notice belongs to no ticket (Message-ID `rl.0.…`). */
const isNotice = (m: ReceivedMail) => (header(m, 'Message-ID') ?? '').startsWith('<rl.0.');
const noticesTo = (address: string) =>
  app.ctx.db
    .selectFrom('outbound_mails')
    .select(['id', 'ticket_id', 'status'])
    .where('kind', '=', 'staff_auth_notice')
    .where('recipient', '=', address)
    .execute();

describe('a staff reply held as auth_failed', () => {
  it('is logged at warn with the reason, and the staff member gets one notice saying why and how to fix it, without ticket content', async () => {
    const customer = `c-${randomBytes(3).toString('hex')}@customer.test`;
    const { notification } = await openTicket(customer, 'Secret invoice 4711');
    const { inbound } = await staffAnswers(notification, 'Refund approved for the secret invoice.', { signWith: null });
    expect(inbound).toMatchObject({ status: 'held', reason: 'auth_failed' });

    const warn = logLines.find((l) => l.level === 40 && String(l.msg).includes('auth_failed'));
    expect(warn).toMatchObject({ inboundId: inbound.id, reason: 'dmarc fail' });

    const [notice] = await sink.waitFor((m) => to('alice@corp.test')(m) && isNotice(m));
    const p = await parse(notice!);
    expect(p.subject).toBe('Your reply to support was not accepted (sender authentication failed)');
    expect(p.text).toContain('dmarc fail');
    expect(p.text).toContain('Publish SPF for corp.test');
    expect(p.text).toContain('STAFF_AUTH=token');
    expect(p.text).toContain(`held release ${inbound.id}`);
    // Nothing of the ticket or the unauthenticated message, and no way to reply into a ticket.
    for (const secret of ['Secret invoice', '4711', 'Refund approved', customer]) expect(notice!.raw.toString()).not.toContain(secret);
    expect(p.replyTo).toBeUndefined();
    expect(header(notice!, 'Auto-Submitted')).toBe('auto-generated');
    expect(await noticesTo('alice@corp.test')).toEqual([expect.objectContaining({ ticket_id: null })]);

    // A second refusal within the hour: held and logged again, but no second notice.
    const again = await staffAnswers(notification, 'Trying once more.', { signWith: null });
    expect(again.inbound).toMatchObject({ status: 'held', reason: 'auth_failed' });
    expect(logLines.filter((l) => l.level === 40 && String(l.msg).includes('auth_failed'))).toHaveLength(2);
    expect(await noticesTo('alice@corp.test')).toHaveLength(1);
  });

  it('speaks Japanese to a Japanese staff member', async () => {
    const customer = `j-${randomBytes(3).toString('hex')}@customer.test`;
    const { notification } = await openTicket(customer, 'Another');
    const { inbound } = await staffAnswers(notification, 'こんにちは', {
      signWith: null,
      from: '健二 <kenji@corp.test>',
      mailFrom: 'kenji@corp.test',
    });
    expect(inbound).toMatchObject({ status: 'held', reason: 'auth_failed' });
    const [notice] = await sink
      .waitFor((m) => to('kenji@corp.test')(m) && isNotice(m))
      .catch(async (err: Error) => {
        throw new Error(
          `${err.message}; outbox: ${JSON.stringify(await app.ctx.db.selectFrom('outbound_mails').select(['kind', 'recipient', 'status', 'last_error']).where('recipient', '=', 'kenji@corp.test').execute())}`,
        );
      });
    const p = await parse(notice!);
    expect(p.subject).toBe('サポートへの返信は受け付けられませんでした（送信者認証の失敗）');
    expect(p.text).toContain('STAFF_AUTH=token');
    expect(p.text).toContain(`held release ${inbound.id}`);
  });
});
