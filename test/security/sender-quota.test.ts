import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uniqueEmail } from '../portal/support.js';
import { startRig, submit, SUPPORT, type Rig } from './support/rig.js';

/**
 * Issue #12, "to close": nothing bounded how many bytes one sender address
 * could bring in per day (only a message count per 10 minutes). Past
 * SENDER_DAILY_BYTES of processed mail in 24 h, further mail from that
 * address is held as sender_quota; other senders are unaffected, on the
 * alone and in a batch alike.
 */
const QUOTA = 60_000;
let rig: Rig;
beforeAll(async () => {
  rig = await startRig({ SENDER_DAILY_BYTES: String(QUOTA) });
});
afterAll(() => rig?.teardown());

describe('per-sender daily byte quota', () => {
  it("holds a sender's mail past the quota, and only that sender's", async () => {
    const heavy = uniqueEmail('heavy');
    const body = 'x'.repeat(25_000);
    const reasons: string[] = [];
    for (let i = 0; i < 4; i++) {
      const row = await submit(rig, { from: heavy, to: SUPPORT, subject: `big ${i}`, text: `${i} ${body}` });
      reasons.push(row.reason ?? row.status);
    }
    const other = await submit(rig, { from: uniqueEmail('light'), to: SUPPORT, subject: 'small', text: 'hello' });
    console.log(`heavy sender, 4 × ~26 KB against ${QUOTA} bytes: ${reasons.join(', ')}; another sender: ${other.status}`);
    expect(reasons).toEqual(['processed', 'processed', 'sender_quota', 'sender_quota']);
    expect(other.status).toBe('processed');
  });
});
