import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthenticateResult } from 'mailauth';
import { createUser } from '../../src/db/queries/users.js';
import { authenticateStaff, judgeAuthentication, type StaffAuthInput } from '../../src/mail/sender-auth.js';
import { makeReplyToken, verifyReplyToken } from '../../src/mail/tokens.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { startDnsServer, type TestDnsServer } from './support/dns-server.js';
import { buildMail, makeDkimKey } from './support/staff-mail.js';

const SECRET = 'test-secret-key-0123456789abcdef0123456789';
let dns: TestDnsServer;
let app: TestApp;
let tokenApp: TestApp;
const corpKey = makeDkimKey();
const evilKey = makeDkimKey();
const staff: Record<string, number> = {};

beforeAll(async () => {
  dns = await startDnsServer({
    // corp.test: DKIM + DMARC p=reject; its SPF only allows another host.
    'corp.test': { TXT: ['v=spf1 ip4:192.0.2.10 -all'] },
    'sel._domainkey.corp.test': { TXT: [corpKey.txt] },
    '_dmarc.corp.test': { TXT: ['v=DMARC1; p=reject'] },
    // spfco.test: SPF for this host, no DKIM, no DMARC.
    'spfco.test': { TXT: ['v=spf1 ip4:127.0.0.1 -all'] },
    // dkimco.test: DKIM only.
    'sel._domainkey.dkimco.test': { TXT: [corpKey.txt] },
    // evil.test: a fully authenticated attacker domain.
    'evil.test': { TXT: ['v=spf1 ip4:127.0.0.1 -all'] },
    'sel._domainkey.evil.test': { TXT: [evilKey.txt] },
    '_dmarc.evil.test': { TXT: ['v=DMARC1; p=none'] },
  });
  [app, tokenApp] = await Promise.all([
    startTestApp({ REPLYLINE_ROLES: 'portal', DNS_SERVERS: dns.server }),
    startTestApp({ REPLYLINE_ROLES: 'portal', STAFF_AUTH: 'token', DNS_SERVERS: '127.0.0.1:9' }),
  ]);
  for (const email of ['alice@corp.test', 'bob@spfco.test', 'carol@dkimco.test']) {
    staff[email] = (await createUser(app.ctx.db, { email, role: 'staff' })).id;
  }
  staff.token = (await createUser(tokenApp.ctx.db, { email: 'alice@corp.test', role: 'staff' })).id;
  staff.tokenOther = (await createUser(tokenApp.ctx.db, { email: 'dave@corp.test', role: 'staff' })).id;
});
afterAll(async () => {
  await Promise.all([app?.teardown(), tokenApp?.teardown()]);
  await dns?.stop();
});

function input(raw: Buffer, over: Partial<StaffAuthInput> & { fromAddress: string }): StaffAuthInput {
  return {
    raw,
    mailFrom: over.fromAddress,
    clientAddress: '127.0.0.1',
    helo: 'mail.client.test',
    replyToken: null,
    staffUserId: staff[over.fromAddress] ?? 0,
    ...over,
  };
}

const corpDkim = { domainName: 'corp.test', keySelector: 'sel', privateKey: corpKey.privateKey };

describe('STAFF_AUTH=dmarc', () => {
  it('accepts a DKIM-signed staff reply whose domain publishes DMARC (DMARC pass through aligned DKIM)', async () => {
    const raw = await buildMail({ from: 'Alice <alice@corp.test>', to: 'support@help.test', text: 'done', dkim: corpDkim });
    const res = await authenticateStaff(app.ctx, input(raw, { fromAddress: 'alice@corp.test' }));
    expect(res).toMatchObject({ ok: true, method: 'dmarc' });
    // The lookups went to our DNS server, not the system resolver.
    expect(dns.queries).toContain('TXT sel._domainkey.corp.test');
  });

  it('accepts SPF pass aligned with the From domain (no DKIM, no DMARC record)', async () => {
    const raw = await buildMail({ from: 'bob@spfco.test', to: 'support@help.test', text: 'ok' });
    const res = await authenticateStaff(app.ctx, input(raw, { fromAddress: 'bob@spfco.test', clientAddress: '::ffff:127.0.0.1' }));
    expect(res).toMatchObject({ ok: true, method: 'spf' });
  });

  it('accepts DKIM pass aligned with the From domain (no DMARC record)', async () => {
    const raw = await buildMail({
      from: 'carol@dkimco.test',
      to: 'support@help.test',
      text: 'ok',
      dkim: { ...corpDkim, domainName: 'dkimco.test' },
    });
    const res = await authenticateStaff(app.ctx, input(raw, { fromAddress: 'carol@dkimco.test', mailFrom: 'carol@dkimco.test' }));
    expect(res).toMatchObject({ ok: true, method: 'dkim' });
  });

  it('rejects the same staff address sent from a host SPF does not allow and without a signature', async () => {
    const raw = await buildMail({ from: 'alice@corp.test', to: 'support@help.test', text: '#status solved' });
    const res = await authenticateStaff(app.ctx, input(raw, { fromAddress: 'alice@corp.test' }));
    expect(res.ok).toBe(false);
    expect(res.method).toBeNull();
  });

  it('rejects a spoofed From: signed and SPF-authenticated, but for the attacker domain', async () => {
    const raw = await buildMail({
      from: 'alice@corp.test',
      to: 'support@help.test',
      text: '#status solved',
      dkim: { domainName: 'evil.test', keySelector: 'sel', privateKey: evilKey.privateKey },
    });
    const res = await authenticateStaff(app.ctx, input(raw, { fromAddress: 'alice@corp.test', mailFrom: 'attacker@evil.test' }));
    expect(res.ok).toBe(false);
    expect(res.reason).toBe('dmarc fail');
  });

  it('ignores an Authentication-Results header written by the sender', async () => {
    const raw = await buildMail({
      from: 'alice@corp.test',
      to: 'support@help.test',
      text: 'trust me',
      headers: {
        'Authentication-Results':
          'help.test; dkim=pass header.d=corp.test; spf=pass smtp.mailfrom=corp.test; dmarc=pass header.from=corp.test',
        'ARC-Authentication-Results': 'i=1; help.test; dmarc=pass',
      },
    });
    const res = await authenticateStaff(app.ctx, input(raw, { fromAddress: 'alice@corp.test', mailFrom: 'alice@corp.test' }));
    expect(res.ok).toBe(false);
  });

  it('rejects a signed mail whose body was changed after signing', async () => {
    const raw = await buildMail({ from: 'alice@corp.test', to: 'support@help.test', text: 'Please refund 10 EUR.', dkim: corpDkim });
    const tampered = Buffer.from(raw.toString('latin1').replace('10 EUR', '9999 EUR'), 'latin1');
    const res = await authenticateStaff(app.ctx, input(tampered, { fromAddress: 'alice@corp.test' }));
    expect(res.ok).toBe(false);
  });

  it('rejects when the pipeline-identified staff address is not the message From (spoofed Reply-To / display tricks)', async () => {
    // An attacker authenticated for evil.test puts the staff address in Reply-To.
    const raw = await buildMail({
      from: 'attacker@evil.test',
      replyTo: 'alice@corp.test',
      to: 'support@help.test',
      text: 'hi',
      dkim: { domainName: 'evil.test', keySelector: 'sel', privateKey: evilKey.privateKey },
    });
    const res = await authenticateStaff(app.ctx, input(raw, { fromAddress: 'alice@corp.test', mailFrom: 'attacker@evil.test' }));
    expect(res).toMatchObject({ ok: false, reason: 'from header does not match the authenticated sender' });
  });

  it('rejects a From with two addresses even if one is authenticated', async () => {
    const raw = await buildMail({ from: 'alice@corp.test, attacker@evil.test', to: 'support@help.test', text: 'x', dkim: corpDkim });
    const res = await authenticateStaff(app.ctx, input(raw, { fromAddress: 'alice@corp.test' }));
    expect(res.ok).toBe(false);
  });

  it('rejects a user who is not staff, and a From that is not the staff account', async () => {
    const raw = await buildMail({ from: 'alice@corp.test', to: 'support@help.test', text: 'x', dkim: corpDkim });
    const customer = await createUser(app.ctx.db, { email: 'eve@corp.test' });
    expect(await authenticateStaff(app.ctx, input(raw, { fromAddress: 'eve@corp.test', staffUserId: customer.id }))).toMatchObject({
      ok: false,
      reason: 'not a staff account',
    });
    expect(
      await authenticateStaff(app.ctx, input(raw, { fromAddress: 'alice@corp.test', staffUserId: staff['bob@spfco.test']! })),
    ).toMatchObject({ ok: false });
  });

  it('never counts a DKIM signature that covers only part of the body (l=), nor DNS errors', () => {
    const base = (dkim: AuthenticateResult['dkim']['results'], spf = 'none', dmarc = 'none'): AuthenticateResult => ({
      dkim: { headerFrom: ['alice@corp.test'], results: dkim },
      spf: { domain: 'corp.test', status: { result: spf } },
      dmarc: { status: { result: dmarc } },
      arc: false,
      bimi: false,
      headers: '',
    });
    const partial = base([{ signingDomain: 'corp.test', status: { result: 'pass', aligned: 'corp.test', underSized: 120 } }]);
    expect(judgeAuthentication(partial, 'alice@corp.test').ok).toBe(false);
    const whole = base([{ signingDomain: 'corp.test', status: { result: 'pass', aligned: 'corp.test' } }]);
    expect(judgeAuthentication(whole, 'alice@corp.test')).toMatchObject({ ok: true, method: 'dkim' });
    const temp = base([{ signingDomain: 'corp.test', status: { result: 'temperror' } }], 'temperror', 'temperror');
    expect(judgeAuthentication(temp, 'alice@corp.test')).toMatchObject({ ok: false, reason: 'dns temporary error' });
    // Subdomain alignment is relaxed (same organisational domain), but another org never aligns.
    const sub = base([{ signingDomain: 'mail.corp.test', status: { result: 'pass', aligned: 'corp.test' } }]);
    expect(judgeAuthentication(sub, 'alice@corp.test').ok).toBe(true);
    const other = base([{ signingDomain: 'corp-test.example', status: { result: 'pass', aligned: false } }]);
    expect(judgeAuthentication(other, 'alice@corp.test').ok).toBe(false);
  });
});

describe('STAFF_AUTH=token', () => {
  const raw = Buffer.from('From: alice@corp.test\r\nSubject: x\r\n\r\nhello\r\n');
  const tokenInput = (over: Partial<StaffAuthInput>): StaffAuthInput => ({
    raw,
    mailFrom: 'alice@corp.test',
    clientAddress: '127.0.0.1',
    helo: 'relay',
    fromAddress: 'alice@corp.test',
    replyToken: null,
    staffUserId: staff.token!,
    ...over,
  });

  it('accepts a valid per-staff reply token with a matching From, without any DNS', async () => {
    const token = verifyReplyToken(SECRET, makeReplyToken(SECRET, { ticketId: 7, userId: staff.token! }));
    expect(await authenticateStaff(tokenApp.ctx, tokenInput({ replyToken: token }))).toMatchObject({ ok: true, method: 'token' });
  });

  it("rejects a missing token, a forged token, another staff member's token, and a From that does not match", async () => {
    expect((await authenticateStaff(tokenApp.ctx, tokenInput({}))).ok).toBe(false);
    const forged = verifyReplyToken(SECRET, `7.${staff.token}.aaaaaaaaaaaaaaaa`);
    expect(forged).toBeNull();
    expect((await authenticateStaff(tokenApp.ctx, tokenInput({ replyToken: forged }))).ok).toBe(false);
    const others = verifyReplyToken(SECRET, makeReplyToken(SECRET, { ticketId: 7, userId: staff.tokenOther! }));
    expect(await authenticateStaff(tokenApp.ctx, tokenInput({ replyToken: others }))).toMatchObject({
      ok: false,
      reason: 'reply token belongs to another user',
    });
    const mine = verifyReplyToken(SECRET, makeReplyToken(SECRET, { ticketId: 7, userId: staff.token! }));
    expect((await authenticateStaff(tokenApp.ctx, tokenInput({ replyToken: mine, fromAddress: 'mallory@corp.test' }))).ok).toBe(false);
  });
});
