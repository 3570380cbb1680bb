import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ipKey } from '../../src/net/ip-key.js';
import { SmtpClient } from '../inbound/support/smtp.js';
import { uniqueEmail } from '../portal/support.js';
import { startRig, submit, SUPPORT, type Rig } from './support/rig.js';

/**
 * Issue #12, "to close": one client held 220 idle SMTP sessions open for two
 * minutes (the per-minute connection limit does not bound how many stay
 * open), and per-IP limits keyed on the exact IPv6 address let a host rotate
 * through its /64. Open sessions are now capped per client, IPv6 clients are
 * counted per /64, and a closed session frees its slot.
 */
const LIMIT = 5;
let rig: Rig;
beforeAll(async () => {
  rig = await startRig({ SMTP_SESSIONS_PER_IP: String(LIMIT), SMTP_CONN_PER_IP_PER_MIN: '1000' });
});
afterAll(() => rig?.teardown());

describe('open SMTP sessions per client', () => {
  it('idle sessions beyond the cap get 421; closing them frees the slots and mail flows again', async () => {
    const idle: SmtpClient[] = [];
    for (let i = 0; i < LIMIT; i++) idle.push(await SmtpClient.connect(rig.smtpPort));
    const refused: string[] = [];
    for (let i = 0; i < 20; i++) {
      const err = await SmtpClient.connect(rig.smtpPort).then(
        (c) => {
          c.close();
          return null;
        },
        (e: { response?: string; message?: string }) => e.response ?? e.message ?? String(e),
      );
      if (err) refused.push(err);
    }
    console.log(`idle sessions held: ${LIMIT}; further connections refused: ${refused.length}/20`);
    expect(refused).toHaveLength(20);
    expect(refused[0]).toMatch(/^421 .*4\.7\.0/);

    for (const c of idle) c.close();
    // The slots free once the server has seen the sockets close: poll, bounded.
    const end = Date.now() + 10_000;
    for (;;) {
      const ok = await SmtpClient.connect(rig.smtpPort).then(
        (c) => (c.close(), true),
        () => false,
      );
      if (ok) break;
      if (Date.now() > end) throw new Error('slots never freed');
      await new Promise((r) => setTimeout(r, 100));
    }
    const row = await submit(rig, { from: uniqueEmail('late'), to: SUPPORT, subject: 'after the flood', text: 'hello' });
    expect(row.status).toBe('processed');
  });

  it('limits key IPv6 clients by /64 and IPv4-mapped clients by their IPv4 address', () => {
    expect(ipKey('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(ipKey('2001:db8:1:2::99')).toBe(ipKey('2001:db8:1:2:ffff:ffff:ffff:ffff'));
    expect(ipKey('2001:0db8:0001:0002::1')).toBe('2001:db8:1:2::/64');
    expect(ipKey('2001:db8:1:3::1')).not.toBe(ipKey('2001:db8:1:2::1'));
    expect(ipKey('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(ipKey('192.0.2.1')).toBe('192.0.2.1');
    expect(ipKey('2001:db8::')).toBe('2001:db8:0:0::/64');
  });
});
