import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from '../outbound/support/relay-sink.js';
import { customerAddress, customerWorld } from './support/customers.js';
import { makeUser, openTicket, replyAddressOf, settle, startRig, submit, toAddress, SUPPORT, type Rig } from './support/rig.js';

/**
 * Finding 3 (blind relay) and finding 7 (REGISTRATION=closed bypass) of
 * issue #12. A forged, unreceivable sender used to open a ticket with up to
 * 48 strangers in Cc, thread a second mail on via its own Message-ID, and
 * have the support address mail every stranger the attacker's text with a
 * working reply address. With closed registration, a held stranger forged a
 * known customer's From with `Cc: himself` and got an account created.
 * Adding people now needs an authenticated From, and closed mode holds CCs
 * without an account.
 */
const customers = customerWorld();

const secret = () => `PHISH${randomBytes(4).toString('hex')}`;
const carries = (s: string) => (m: { raw: Buffer }) => m.raw.toString('latin1').replace(/=\r\n/g, '').includes(s);
const strangers = (n: number) => Array.from({ length: n }, (_, i) => `stranger${i}-${randomBytes(2).toString('hex')}@victims.test`);

describe('forged sender with strangers in Cc (open registration)', () => {
  let rig: Rig;
  beforeAll(async () => {
    rig = await startRig(
      {},
      {
        zone: {
          ...customers.zone,
          'bank.test': { TXT: ['v=spf1 ip4:192.0.2.30 -all'] },
          '_dmarc.bank.test': { TXT: ['v=DMARC1; p=reject'] },
        },
      },
    );
  });
  afterAll(() => rig?.teardown());

  it('48 strangers, then a second mail threading on its own Message-ID: held, no stranger gets any mail or account', async () => {
    const list = strangers(48);
    const s = secret();
    const mid = `<phish.${randomBytes(4).toString('hex')}@bank.test>`;
    const first = await submit(
      rig,
      {
        from: { name: 'Acme Security', address: 'security@bank.test' },
        to: SUPPORT,
        cc: list,
        subject: 'Account locked',
        text: `Verify at https://evil.test/${s}`,
        messageId: mid,
      },
      { from: 'bounce@nowhere.test' },
    );
    expect(first).toMatchObject({ status: 'held', reason: 'sender_unverified' });
    const second = await submit(
      rig,
      {
        from: { name: 'Acme Security', address: 'security@bank.test' },
        to: SUPPORT,
        cc: list,
        subject: 'Re: Account locked',
        text: `Last chance ${s}`,
        inReplyTo: mid,
        references: [mid],
      },
      { from: 'bounce@nowhere.test' },
    );
    expect(second.status).toBe('held');
    await settle([rig]);
    const mailed = rig.sink.received.filter((m) => list.some((x) => toAddress(x)(m)));
    const accounts = await rig.db.selectFrom('users').select('id').where('email', 'in', list).execute();
    const carrying = rig.sink.received.filter(carries(s));
    console.log(
      `relay attempt: strangers mailed ${mailed.length}/48, accounts created ${accounts.length}, mails carrying the attacker's text ${carrying.length}`,
    );
    expect(mailed).toHaveLength(0);
    expect(accounts).toHaveLength(0);
    expect(carrying).toHaveLength(0);
  });
});

describe('REGISTRATION=closed', () => {
  let rig: Rig;
  beforeAll(async () => {
    rig = await startRig({ REGISTRATION: 'closed' }, { zone: customers.zone });
  });
  afterAll(() => rig?.teardown());

  it("a stranger forging a known customer's From with Cc himself gets no account; an authenticated customer's unknown CC is held too", async () => {
    const carol = (await makeUser(rig.db, { email: customerAddress('carol') })).email;
    const t = await openTicket(rig, { email: carol, dkim: customers.dkim });
    const stranger = `stranger-${randomBytes(3).toString('hex')}@evil.test`;

    const forged = await submit(
      rig,
      { from: carol, to: SUPPORT, cc: stranger, subject: `Re: ${t.subject}`, text: 'add my colleague' },
      { from: stranger },
    );
    expect(forged).toMatchObject({ status: 'held', reason: 'sender_unverified' });

    // Even the genuine customer cannot create accounts through Cc while registration is closed.
    const genuine = await submit(rig, {
      from: carol,
      to: SUPPORT,
      cc: stranger,
      subject: 'New question',
      text: 'cc my colleague',
      dkim: customers.dkim,
    });
    expect(genuine).toMatchObject({ status: 'held', reason: 'unknown_cc' });

    await settle([rig]);
    expect(await rig.db.selectFrom('users').select('id').where('email', '=', stranger).executeTakeFirst()).toBeUndefined();
    expect(rig.sink.received.filter(toAddress(stranger))).toHaveLength(0);
  });
});

describe('author shown in customer-facing mail', () => {
  let rig: Rig;
  beforeAll(async () => {
    rig = await startRig({}, { zone: customers.zone });
  });
  afterAll(() => rig?.teardown());

  it('a customer named "Acme Security" is shown to the other participants with her address, not the name alone', async () => {
    const carol = customerAddress('carol');
    const dave = customerAddress('dave');
    const first = await submit(rig, {
      from: { name: 'Acme Security', address: carol },
      to: SUPPORT,
      cc: dave,
      subject: 'Order',
      text: 'Opening.',
      dkim: customers.dkim,
    });
    expect(first.status).toBe('processed');
    const [ack] = await rig.sink.waitFor(toAddress(carol));
    const replyTo = await replyAddressOf(ack!);
    const s = secret();
    await submit(
      rig,
      { from: { name: 'Acme Security', address: carol }, to: replyTo, subject: 'Re: Order', text: `Update ${s}`, dkim: customers.dkim },
      { to: [replyTo] },
    );
    const [toDave] = await rig.sink.waitFor((m) => toAddress(dave)(m) && carries(s)(m));
    const text = (await parse(toDave!)).text ?? '';
    expect(text).toContain(`Acme Security (${carol}) wrote`);
  });
});
