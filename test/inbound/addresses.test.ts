import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writtenAddresses } from '../../src/jobs/inbound/addresses.js';
import { analyzeMessage } from '../../src/jobs/inbound/analyze.js';
import { LOOP_HEADER } from '../../src/mail/compose.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { trustedSenderDns } from '../support/sender-dns.js';
import type { TestDnsServer } from '../outbound/support/dns-server.js';
import { makeStaff } from './support/fixtures.js';
import { queuedId, sendOnce, waitProcessed } from './support/smtp.js';

/**
 * Address headers are read as written: an address that does not parse as
 * written is never "repaired" into a different, deliverable one, and each
 * display name belongs to the mailbox whose address it stands before.
 */

const OPTS = { envelopeFrom: 'sender@customer.example', mailDomain: 'help.test', loopHeader: LOOP_HEADER, attachmentMaxBytes: 1024 * 1024 };
const mail = (headers: string) =>
  Buffer.from(`${headers}\r\nTo: support@help.test\r\nSubject: hi\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n`, 'utf8');
const zammad = (name: string) =>
  readFileSync(path.resolve(import.meta.dirname, `../../../shared/corpus/zammad-zammad/test/data/mail/${name}.box`));

describe('addresses as written', () => {
  it('reads angle brackets whole, bare tokens, a lone quoted address, and skips quoted names and comments', () => {
    expect(writtenAddresses('"your secret past" <power quadrant system@example.com>').map((w) => w.address)).toEqual([
      'power quadrant system@example.com',
    ]);
    expect(
      writtenAddresses('"bob@evil.example" <bob@real.example>, carol@real.example (Carol <x@y.example>)').map((w) => w.address),
    ).toEqual(['bob@real.example', 'carol@real.example']);
    expect(writtenAddresses('"finances8@loans.example"').map((w) => w.address)).toEqual(['finances8@loans.example']);
  });

  it('mail071: "<power quadrant system@example.com>" is no address: no sender, held listing shows it as written', async () => {
    const a = await analyzeMessage(mail('From: "your secret past" <power quadrant system@example.com>'), OPTS);
    expect(a.from).toBeNull();
    expect(a.fromInvalid).toBe(true);
    expect(a.fromHeaderAddress).toBe('power quadrant system@example.com');
  });

  it('mail059: a nameless "<>" entry does not lend its name to the next mailbox', async () => {
    const a = await analyzeMessage(mail('From: "Yangzhou ABC Lighting Equipment " <>, "LTD" <ly@example.com>'), OPTS);
    expect(a.from).toEqual({ address: 'ly@example.com', name: 'LTD' });
  });

  it('names stay with their own mailbox in To and Cc (encoded words decoded); broken entries are dropped, valid ones kept', async () => {
    const a = await analyzeMessage(
      Buffer.from(
        'From: =?iso-8859-1?Q?B=FCrling,=20Andreas?= <smith@example.com>\r\nTo: Bob <bob@x.example>, "=?utf-8?Q?Jos=C3=A9?=" <jose@x.example>\r\n' +
          'Cc: <a b@x.example>, c@x.example, "Dee" <>, Eve <eve@x.example>\r\nSubject: hi\r\n\r\nHello\r\n',
      ),
      OPTS,
    );
    expect(a.from).toEqual({ address: 'smith@example.com', name: 'Bürling, Andreas' });
    expect(a.to).toEqual([
      { address: 'bob@x.example', name: 'Bob' },
      { address: 'jose@x.example', name: 'José' },
    ]);
    expect(a.cc).toEqual([
      { address: 'c@x.example', name: '' },
      { address: 'eve@x.example', name: 'Eve' },
    ]);
  });

  it('ordinary forms are unchanged: bare address, comment name, quoted name, raw UTF-8 name', async () => {
    expect((await analyzeMessage(mail('From: john@x.example (John)'), OPTS)).from?.address).toBe('john@x.example');
    expect((await analyzeMessage(mail('From: "Doe, John" <John.Doe@X.example>'), OPTS)).from).toEqual({
      address: 'john.doe@x.example',
      name: 'Doe, John',
    });
    expect((await analyzeMessage(mail('From: 山田 太郎 <taro@x.example>'), OPTS)).from).toEqual({
      address: 'taro@x.example',
      name: '山田 太郎',
    });
  });
});

describe('through the real listener and pipeline', () => {
  let app: TestApp;
  let dns: TestDnsServer;
  beforeAll(async () => {
    dns = await trustedSenderDns(['example.com']);
    app = await startTestApp({ DNS_SERVERS: dns.server });
    await makeStaff(app.ctx.db);
  });
  afterAll(async () => {
    await app.teardown();
    await dns.stop();
  });

  const send = async (raw: Buffer) =>
    waitProcessed(
      app.ctx.db,
      queuedId(await sendOnce(app.smtp!.port, { from: 'sender@customer.example', to: ['support@help.test'] }, raw)),
    );

  it('mail071 is held as invalid_sender and nothing is ever queued for system@example.com', async () => {
    const row = await send(zammad('mail071'));
    expect(row).toMatchObject({
      status: 'held',
      reason: 'invalid_sender',
      from_address: 'power quadrant system@example.com',
      ticket_id: null,
    });
    const outbound = await app.ctx.db
      .selectFrom('outbound_mails')
      .select('recipient')
      .where('recipient', 'like', '%system@example.com%')
      .execute();
    expect(outbound).toEqual([]);
  });

  it('mail059 opens a ticket for ly@example.com named "LTD", acknowledged to that address', async () => {
    // Its To names other people: only an authenticated sender may add them, so example.com's SPF passes here.
    const row = await waitProcessed(
      app.ctx.db,
      queuedId(await sendOnce(app.smtp!.port, { from: 'ly@example.com', to: ['support@help.test'] }, zammad('mail059'))),
    );
    expect(row.status).toBe('processed');
    const requester = await app.ctx.db
      .selectFrom('tickets')
      .innerJoin('users', 'users.id', 'tickets.requester_id')
      .select(['users.email', 'users.name'])
      .where('tickets.id', '=', row.ticket_id!)
      .executeTakeFirstOrThrow();
    expect(requester).toEqual({ email: 'ly@example.com', name: 'LTD' });
    const acks = await app.ctx.db
      .selectFrom('outbound_mails')
      .select('recipient')
      .where('ticket_id', '=', row.ticket_id!)
      .where('kind', '=', 'acknowledgement')
      .execute();
    expect(acks.map((o) => o.recipient)).toEqual(['ly@example.com']);
  });
});
