import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HELD_REASONS } from '../../src/jobs/inbound/held.js';
import { rawDialogue, SmtpClient } from '../inbound/support/smtp.js';
import { uniqueEmail } from '../portal/support.js';
import { startRig, submit, submitRaw, SUPPORT, type Rig } from './support/rig.js';

/**
 * Oversize and malformed SMTP input. Limits are answered with clear SMTP
 * replies (552 for size, 421 for an absurd command line) and nothing
 * is stored for a refused message; anything accepted with 250 is stored as
 * received and ends processed or held with a reason — never lost, never a
 * crash, never a stuck row. Afterwards the app is healthy: /healthz 200 and
 * the listener still turns a normal mail into a ticket.
 */
const MAX_SIZE = 2 * 1024 * 1024;
let rig: Rig;

beforeAll(async () => {
  rig = await startRig({ SMTP_MAX_SIZE: String(MAX_SIZE) });
});
afterAll(() => rig?.teardown());

async function inboundCount(): Promise<number> {
  const r = await rig.db
    .selectFrom('inbound_messages')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/** Deterministic pseudo-random bytes (xorshift32), so a failure can be replayed byte for byte. */
function garbage(length: number, seed = 0x9e3779b9): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

const smtpError = (err: unknown) => {
  const e = err as { responseCode?: number; response?: string };
  return `${e.responseCode} ${e.response}`;
};

describe('size limits', () => {
  it('a declared SIZE over the limit is refused at MAIL FROM with 552', async () => {
    const replies = await rawDialogue(rig.smtpPort, ['EHLO mx.sender.test', 'MAIL FROM:<big@customer.test> SIZE=999999999', 'QUIT']);
    expect(replies[1]).toMatch(new RegExp(`^250[- ]SIZE ${MAX_SIZE}\\r?$`, 'm'));
    expect(replies[2]).toMatch(/^552 .*maximum message size/);
  });

  it('data over the limit without a SIZE declaration is refused with 552 5.3.4, nothing is stored, and the session goes on', async () => {
    const before = await inboundCount();
    const client = await SmtpClient.connect(rig.smtpPort, { name: 'mx.sender.test' });
    try {
      const big = `From: big@customer.test\r\nSubject: big\r\n\r\n${`${'x'.repeat(998)}\r\n`.repeat(Math.ceil((MAX_SIZE + 4096) / 1000))}`;
      const err = await client.send({ from: 'big@customer.test', to: [SUPPORT] }, big).catch((e: unknown) => e);
      expect(smtpError(err)).toMatch(/^552 .*5\.3\.4/);
      expect(await inboundCount()).toBe(before);
      await client.reset();
      const ok = await client.send(
        { from: 'small@customer.test', to: [SUPPORT] },
        'From: small@customer.test\r\nSubject: small\r\n\r\nfits\r\n',
      );
      expect(ok).toMatch(/^250 /);
    } finally {
      client.close();
    }
  });

  it('a 1 MB command line is answered 421 and that connection closed; nothing is stored', async () => {
    const before = await inboundCount();
    const replies = await rawDialogue(rig.smtpPort, ['EHLO mx.sender.test', `MAIL FROM:<${'a'.repeat(1024 * 1024)}@customer.test>`]);
    expect(replies[2]).toMatch(/^421 /);
    expect(await inboundCount()).toBe(before);
  });
});

describe('SMTP smuggling', () => {
  it('bare LF / bare CR end-of-data look-alikes do not end DATA: one message per transaction, the smuggled commands stay content', async () => {
    for (const eod of ['\n.\n', '\r.\r', '\n.\r\n', '\r\n.\n', '\r.\r\n']) {
      const m = Math.random().toString(36).slice(2, 10);
      const before = await inboundCount();
      const data = [
        `From: customer-${m}@customer.test\r\nTo: ${SUPPORT}\r\nSubject: outer ${m}\r\n\r\nhello${eod}`,
        `MAIL FROM:<staff@corp.test>\r\nRCPT TO:<${SUPPORT}>\r\nDATA\r\n`,
        `From: staff@corp.test\r\nTo: ${SUPPORT}\r\nSubject: smuggled ${m}\r\n\r\nSMUGGLED ${m}\r\n.`,
      ].join('');
      const replies = await rawDialogue(rig.smtpPort, [
        'EHLO mx.sender.test',
        `MAIL FROM:<customer-${m}@customer.test>`,
        `RCPT TO:<${SUPPORT}>`,
        'DATA',
        data,
        'QUIT',
      ]);
      const label = JSON.stringify(eod);
      expect(replies[4], label).toMatch(/^354 /);
      // Exactly one reply to the whole DATA: no 250s for smuggled MAIL/RCPT/DATA commands.
      expect(replies[5], label).toMatch(/^250 [^\r\n]*queued as \d+$/);
      expect(replies[6], label).toMatch(/^221 /);
      expect(await inboundCount(), label).toBe(before + 1);
      const id = Number(/queued as (\d+)/.exec(replies[5]!)![1]);
      const row = await rig.db
        .selectFrom('inbound_messages')
        .select(['raw', 'rcpt_to', 'mail_from'])
        .where('id', '=', id)
        .executeTakeFirstOrThrow();
      expect(row.raw.toString('latin1'), label).toContain(`SMUGGLED ${m}`);
      expect(row.mail_from).toBe(`customer-${m}@customer.test`);
    }
  });
});

describe('malformed messages are stored and end processed or held with a reason', () => {
  const marker = () => `MARK${Math.random().toString(36).slice(2, 10)}`;
  const cases: Array<[string, (m: string) => Buffer | string, string | null]> = [
    [
      'thousands of headers',
      (m) =>
        `From: h-${m}@customer.test\r\nSubject: ${m}\r\n${Array.from({ length: 10_000 }, (_, i) => `X-H${i}: ${'v'.repeat(40)}`).join('\r\n')}\r\n\r\nbody\r\n`,
      null,
    ],
    ['8-bit garbage', (m) => Buffer.concat([Buffer.from(`${m}\r\n`), garbage(256 * 1024)]), null],
    [
      '8-bit garbage inside headers, NUL bytes and bare CR/LF line ends',
      (m) =>
        Buffer.concat([
          Buffer.from(`From: g-${m}@customer.test\nSubject: `),
          garbage(512, 7),
          Buffer.from('\rX-Nul: a\u0000b\r\n\r\nbody\u0000\n'),
          garbage(4096, 11),
        ]),
      null,
    ],
    ['no From header', (m) => `To: ${SUPPORT}\r\nSubject: ${m}\r\n\r\nwho am I?\r\n`, 'invalid_sender'],
    [
      'a From header without a usable address',
      (m) => `From: "Nobody" <not an address ${m}>\r\nSubject: ${m}\r\n\r\nbody\r\n`,
      'invalid_sender',
    ],
    [
      'deep multipart nesting (1,000 levels)',
      (m) => {
        let body = `Content-Type: text/plain\r\n\r\ndeep ${m}\r\n`;
        for (let i = 0; i < 1000; i++) body = `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\n${body}--b${i}--\r\n`;
        return `From: d-${m}@customer.test\r\nSubject: deep\r\nMIME-Version: 1.0\r\n${body}`;
      },
      null,
    ],
    ['a single 1 MB body line', (m) => `From: l-${m}@customer.test\r\nSubject: ${m}\r\n\r\n${'y'.repeat(1024 * 1024)}\r\n`, null],
    ['a 1 MB Subject header', (m) => `From: s-${m}@customer.test\r\nSubject: ${m}${'z'.repeat(1024 * 1024)}\r\n\r\nbody\r\n`, null],
    [
      'broken MIME: no closing boundary, bad base64, unknown charset, encoded-word soup',
      (m) =>
        [
          `From: =?x-unknown?B?!!!?= <b-${m}@customer.test>`,
          `Subject: =?utf-8?Q?=ZZ=?= =?utf-8?B?${'A'.repeat(3)}?=`,
          'MIME-Version: 1.0',
          'Content-Type: multipart/mixed; boundary="zz"',
          '',
          '--zz',
          'Content-Type: text/plain; charset=x-unknown',
          'Content-Transfer-Encoding: quoted-printable',
          '',
          '=ZZ=',
          '--zz',
          'Content-Type: application/pdf; name="=?utf-8?B?!!!?="',
          'Content-Transfer-Encoding: base64',
          '',
          '@@@@ not base64 @@@@',
          '',
        ].join('\r\n'),
      null,
    ],
  ];

  for (const [name, make, expected] of cases) {
    it(`${name} → 250, raw kept, then ${expected ? `held ${expected}` : 'processed or held with a reason'}`, async () => {
      const m = marker();
      const row = await submitRaw(rig, make(m), { from: `sender-${m}@customer.test`, to: [SUPPORT] });
      console.log(
        `malformed input "${name}": ${row.size} bytes stored, ${row.status}${row.reason ? ` ${row.reason}` : ''}${row.error ? ` (${row.error.slice(0, 80)})` : ''}`,
      );
      expect(row.raw.includes(Buffer.from(m))).toBe(true);
      expect(row.size).toBe(row.raw.length);
      expect(['processed', 'held']).toContain(row.status);
      if (expected) expect(row).toMatchObject({ status: 'held', reason: expected });
      if (row.status === 'held') {
        expect(Object.keys(HELD_REASONS)).toContain(row.reason);
        if (row.reason === 'parse_failed' || row.reason === 'processing_error') expect(row.error).toBeTruthy();
      }
    }, 30_000);
  }
});

describe('afterwards the app is healthy', () => {
  it('/healthz answers 200, the listener greets, and a normal mail still becomes a ticket', async () => {
    const health = await fetch(`${rig.base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok' });
    const [greeting] = await rawDialogue(rig.smtpPort, []);
    expect(greeting).toMatch(/^220 /);
    const row = await submit(rig, { from: uniqueEmail('normal'), to: SUPPORT, subject: 'Normal mail after the abuse', text: 'Hello' });
    expect(row.status).toBe('processed');
    expect(row.ticket_id).not.toBeNull();
    expect(await rig.db.selectFrom('inbound_messages').select('id').where('status', '=', 'received').execute()).toEqual([]);
  });
});
