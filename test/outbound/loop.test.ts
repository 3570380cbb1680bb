import { afterAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.js';
import { deliverRaw, waitInbound } from './support/smtp-client.js';
import { buildMail } from './support/staff-mail.js';
import { mid } from './support/flow.js';
import { freePort } from '../support/net.js';
import { startStrippingRelay } from '../support/stripping-relay.js';

/**
 * Two replyline instances whose support addresses write to each other:
 * A relays its outbound mail to B's SMTP listener and B to A's. A human
 * mail from B's support address to A starts it; the exchange must stop
 * after at most two mails.
 */
const started: Array<{ teardown(): Promise<void> }> = [];
const apps: TestApp[] = [];
afterAll(async () => {
  // Each instance's pooled client holds a session open on the other's listener;
  // drop the pools first so neither listener waits out its close timeout.
  for (const app of apps) app.ctx.transport.close();
  for (const s of started.reverse()) await s.teardown();
});

async function pair(opts: { strip: boolean }) {
  const [portA, portB] = [await freePort(), await freePort()];
  // A relay that "helpfully" drops every header that marks mail as automatic, then forwards.
  const relayToB = opts.strip ? await startStrippingRelay(portB) : null;
  const relayToA = opts.strip ? await startStrippingRelay(portA) : null;
  if (relayToB) started.push({ teardown: relayToB.stop });
  if (relayToA) started.push({ teardown: relayToA.stop });
  const a = await startTestApp({
    SUPPORT_ADDRESSES: 'support@a.test',
    MAIL_DOMAIN: 'a.test',
    SMTP_LISTEN: `127.0.0.1:${portA}`,
    OUTBOUND_SMTP_URL: `smtp://127.0.0.1:${relayToB?.port ?? portB}`,
  });
  started.push(a);
  apps.push(a);
  const b = await startTestApp({
    SUPPORT_ADDRESSES: 'support@b.test',
    MAIL_DOMAIN: 'b.test',
    SMTP_LISTEN: `127.0.0.1:${portB}`,
    OUTBOUND_SMTP_URL: `smtp://127.0.0.1:${relayToA?.port ?? portA}`,
  });
  started.push(b);
  apps.push(b);
  return { a, b };
}

async function sentCount(app: TestApp): Promise<number> {
  const r = await app.ctx.db
    .selectFrom('outbound_mails')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('status', '=', 'sent')
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

async function inboundCount(app: TestApp): Promise<number> {
  const r = await app.ctx.db
    .selectFrom('inbound_messages')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/** Waits until neither side has anything left to process or send, and nothing changed for a while. */
async function settle(a: TestApp, b: TestApp, quietMs = 1500, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last = '';
  let stableSince = Date.now();
  while (Date.now() < end) {
    const pending = await Promise.all(
      [a, b].map(async (x) => {
        const inb = await x.ctx.db.selectFrom('inbound_messages').select('id').where('status', '=', 'received').execute();
        const out = await x.ctx.db.selectFrom('outbound_mails').select('id').where('status', '=', 'queued').execute();
        return inb.length + out.length;
      }),
    );
    const state = `${pending.join(',')}|${await sentCount(a)},${await sentCount(b)}|${await inboundCount(a)},${await inboundCount(b)}`;
    if (state !== last) {
      last = state;
      stableSince = Date.now();
    } else if (pending.every((n) => n === 0) && Date.now() - stableSince > quietMs) {
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`instances did not settle: ${last}`);
}

async function start(a: TestApp) {
  const seed = mid('seed');
  const raw = await buildMail({
    from: 'Support B <support@b.test>',
    to: 'support@a.test',
    subject: 'Hello from B',
    text: 'Can you help?',
    headers: { 'Message-ID': `<${seed}>` },
  });
  await deliverRaw(a.smtp!.port, raw, { from: 'support@b.test', to: ['support@a.test'] });
  await waitInbound(a.ctx.db, seed);
}

describe('two instances writing to each other', () => {
  it('stop after at most two mails', async () => {
    const { a, b } = await pair({ strip: false });
    await start(a);
    await settle(a, b);
    const total = (await sentCount(a)) + (await sentCount(b));
    expect(total).toBeGreaterThanOrEqual(1); // A did acknowledge the human mail
    expect(total).toBeLessThanOrEqual(2);
    // B recognised A's acknowledgement as machine mail: no ticket there.
    const held = await b.ctx.db.selectFrom('inbound_messages').select(['status', 'reason']).execute();
    expect(held.every((r) => r.status === 'held')).toBe(true);
    expect(await b.ctx.db.selectFrom('tickets').select('id').execute()).toEqual([]);
  });

  it('stop after at most two mails even when a relay strips Auto-Submitted and our loop header', async () => {
    const { a, b } = await pair({ strip: true });
    await start(a);
    await settle(a, b);
    const total = (await sentCount(a)) + (await sentCount(b));
    // A acknowledged the human mail and it crossed the stripping relay to B: the loop was really offered.
    expect(total).toBeGreaterThanOrEqual(1);
    expect(await inboundCount(b)).toBeGreaterThanOrEqual(1);
    expect(total).toBeLessThanOrEqual(2);
  });
});
