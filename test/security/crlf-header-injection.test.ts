import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, rawHeaders, type ReceivedMail } from '../outbound/support/relay-sink.js';
import { Client, uniqueEmail } from '../portal/support.js';
import {
  makeUser,
  openTicket,
  ofTicket,
  PASSWORD,
  replyAddressOf,
  setPassword,
  settle,
  startRig,
  submit,
  submitRaw,
  toAddress,
  SUPPORT,
  TRUSTED_CUSTOMERS,
  type Rig,
} from './support/rig.js';

/**
 * CRLF header injection into outbound mail. Names, subjects, file names and
 * addresses reach us with CR/LF smuggled inside RFC 2047 encoded words and
 * RFC 2231 parameters (the only way past an SMTP line), or typed into the
 * portal. Whatever we send must arrive at the relay with exactly the headers
 * we meant and exactly one recipient — no Bcc, no extra header, no victim.
 */
let rig: Rig;
let staff: string;
const victims = [
  'victim1@evil.test',
  'victim2@evil.test',
  'victim3@evil.test',
  'victim4@evil.test',
  'victim5@evil.test',
  'victim6@evil.test',
];

beforeAll(async () => {
  rig = await startRig({}, { zone: TRUSTED_CUSTOMERS });
  staff = (await makeUser(rig.db, { role: 'staff', name: 'Sam Staff', email: uniqueEmail('sam') })).email;
});
afterAll(() => rig?.teardown());

const b64 = (s: string) => `=?UTF-8?B?${Buffer.from(s, 'utf8').toString('base64')}?=`;
const INJECT = (n: number, where: string) => `\r\nBcc: ${victims[n]}\r\nX-Injected: ${where}\r\n\r\nfake body`;

/** The header block is well-formed: CRLF only, each line a header or a fold, and none of it ours-not. */
function expectCleanHeaders(m: ReceivedMail) {
  const block = rawHeaders(m);
  expect(block.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
  for (const line of block.split('\r\n').filter(Boolean)) expect(line, 'header line').toMatch(/^([!-9;-~]+:|[ \t])/);
  const names = block
    .replace(/\r\n[ \t]+/g, ' ')
    .split('\r\n')
    .filter(Boolean)
    .map((l) => l.slice(0, l.indexOf(':')).toLowerCase());
  expect(names).not.toContain('bcc');
  expect(names).not.toContain('x-injected');
  expect(names.filter((n) => n === 'to')).toHaveLength(1);
  expect(names.filter((n) => n === 'subject')).toHaveLength(1);
  expect(m.rcptTo).toHaveLength(1);
  for (const v of victims) expect(m.rcptTo).not.toContain(v);
}

async function expectCleanMail(m: ReceivedMail) {
  expectCleanHeaders(m);
  const parsed = await parse(m);
  expect(parsed.to && !Array.isArray(parsed.to) ? parsed.to.value.map((a) => a.address) : null).toEqual(m.rcptTo);
  expect(parsed.bcc).toBeUndefined();
  expect(parsed.headers.has('x-injected')).toBe(false);
  return parsed;
}

describe('CRLF header injection from inbound mail', () => {
  it('CR/LF in the sender name, subject, a CC name and an attachment name is flattened in every mail we send; no header or recipient is added', async () => {
    const eve = uniqueEmail('eve');
    const dan = uniqueEmail('dan');
    const tag = randomBytes(3).toString('hex');
    const raw = [
      `From: ${b64(`Eve${INJECT(0, 'name')}`)} <${eve}>`,
      `To: ${SUPPORT}`,
      // A CC whose name carries CR/LF, and one whose address is an encoded word hiding CR/LF.
      `Cc: ${b64(`Dan${INJECT(1, 'cc-name')}`)} <${dan}>, <=?utf-8?Q?ann=0D=0ABcc=3A_${victims[5]!.replace('@', '=40')}?=@customer.test>`,
      `Subject: Help ${tag} ${b64(INJECT(2, 'subject'))}`,
      `Message-ID: <crlf.${tag}@customer.test>`,
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="b1"',
      '',
      '--b1',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'My printer is on fire.',
      '--b1',
      'Content-Type: text/plain',
      `Content-Disposition: attachment; filename*=UTF-8''report%0D%0ABcc%3A%20${encodeURIComponent(victims[3]!)}%0D%0AX-Injected%3A%20file.txt`,
      '',
      'attachment',
      '--b1--',
      '',
    ].join('\r\n');
    const opened = await submitRaw(rig, raw, { from: eve, to: [SUPPORT] });
    expect(opened.status).toBe('processed');
    const ticketId = opened.ticket_id!;
    // The payload did get in (stored as the sender wrote it): the test is not vacuous.
    const stored = await rig.db.selectFrom('users').select('name').where('email', '=', eve).executeTakeFirstOrThrow();
    expect(stored.name).toContain('Bcc: victim1@evil.test');

    // Eve answers her acknowledgement: Dan (CC, with the hostile name) gets a ticket update.
    const [ack] = await rig.sink.waitFor((m) => toAddress(eve)(m) && ofTicket(ticketId)(m));
    const replyTo = await replyAddressOf(ack!);
    expect((await submit(rig, { from: eve, to: replyTo, subject: `Re: ${tag}`, text: 'Any news?' }, { to: [replyTo] })).status).toBe(
      'processed',
    );
    await rig.sink.waitFor((m) => toAddress(dan)(m) && ofTicket(ticketId)(m));
    await settle([rig]);

    const ticketMails = rig.sink.received.filter(ofTicket(ticketId));
    const recipients = new Set(ticketMails.map((m) => m.rcptTo[0]));
    for (const r of [eve, dan, staff]) expect(recipients).toContain(r);
    for (const r of recipients) expect(r).not.toMatch(/[\r\n]/);
    for (const m of ticketMails) {
      const parsed = await expectCleanMail(m);
      expect(parsed.subject).toContain(`Help ${tag}`);
      expect(parsed.subject).not.toMatch(/[\r\n]/);
      // The hostile text is still there, flattened to one line — shown, never obeyed.
      if (m.rcptTo[0] === eve)
        expect(parsed.to && !Array.isArray(parsed.to) ? parsed.to.value[0]!.name : '').toMatch(
          /^Eve Bcc: victim1@evil\.test X-Injected: name fake body$/,
        );
      if (m.rcptTo[0] === dan)
        expect(parsed.to && !Array.isArray(parsed.to) ? parsed.to.value[0]!.name : '').toContain('Dan Bcc: victim2@evil.test');
    }
    for (const v of victims) expect(rig.sink.received.filter(toAddress(v))).toEqual([]);
  });
});

describe('CRLF header injection from the portal', () => {
  it('a sign-up name with CR/LF is refused (422): no account, no mail', async () => {
    for (const name of [`Eve\r\nBcc: ${victims[4]}`, `Eve\nBcc: ${victims[4]}`, `Eve\rBcc: ${victims[4]}`, `Eve\u0085Bcc: ${victims[4]}`]) {
      const email = uniqueEmail('signup-crlf');
      const client = new Client(rig.base);
      await client.get('/signup');
      const res = await client.post('/signup', { name, email });
      expect(res.status).toBe(422);
      expect(await rig.db.selectFrom('users').select('id').where('email', '=', email).execute()).toEqual([]);
    }
  });

  it('a sign-up name with Unicode line separators is accepted but reaches the To header on one line', async () => {
    const email = uniqueEmail('signup-ls');
    const client = new Client(rig.base);
    await client.get('/signup');
    const res = await client.post('/signup', { name: `Eve\u2028Bcc: ${victims[4]}\u2029X-Injected: ls`, email });
    expect(res.status).toBe(200);
    const [m] = await rig.sink.waitFor(toAddress(email));
    const parsed = await expectCleanMail(m!);
    expect(parsed.to && !Array.isArray(parsed.to) ? parsed.to.value[0]!.name : '').toBe(`Eve Bcc: ${victims[4]} X-Injected: ls`);
  });

  it('a CC address with CR/LF typed into a request is refused (422) and mails nobody', async () => {
    const t = await openTicket(rig, { staff: [staff] });
    await setPassword(rig.db, t.email, PASSWORD);
    const client = new Client(rig.base);
    expect((await client.login(t.email, PASSWORD)).status).toBe(303);
    await client.get(`/requests/${t.ticketId}`);
    for (const email of [
      `friend@customer.test\r\nBcc: ${victims[5]}`,
      `friend@customer.test\nRCPT TO:<${victims[5]}>`,
      `"x\r\ny"@customer.test`,
    ]) {
      expect((await client.post(`/requests/${t.ticketId}/ccs`, { email })).status).toBe(422);
    }
    const participants = await rig.db.selectFrom('ticket_participants').select('user_id').where('ticket_id', '=', t.ticketId).execute();
    expect(participants).toHaveLength(1);
    await settle([rig]);
    expect(rig.sink.received.filter(toAddress(victims[5]!))).toEqual([]);
  });
});
