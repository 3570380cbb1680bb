import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uniqueEmail } from '../portal/support.js';
import { queuedId, sendOnce, waitProcessed } from '../inbound/support/smtp.js';
import { compose, startRig, submit, SUPPORT, type Rig } from './support/rig.js';

/**
 * Finding 2 of issue #12: the reply-delimiter regex (`^[>\s]*##-…`) let
 * `\s` run across line breaks, so a body of 144 KB of `>` lines cost 2.6 s
 * of CPU; a dozen such mails delayed everyone's mail by tens of seconds and
 * each ended as parse_failed. The attack mails must now become ordinary
 * tickets within the normal parse limit, and an unrelated customer's mail
 * sent right after them is processed too.
 */
let rig: Rig;
beforeAll(async () => {
  rig = await startRig();
});
afterAll(() => rig?.teardown());

describe('quote-delimiter regex cost', () => {
  it('a dozen 144 KB bodies of "> " lines are parsed within the limit, and the next customer is not starved', async () => {
    const attacker = uniqueEmail('quoter');
    const body = '>\r\n'.repeat(48_000);
    const raw = await compose({ from: attacker, to: SUPPORT, subject: 'quotes', text: body });
    const started = Date.now();
    // Accepted first (as an attacker would send them), then waited for with a generous bound: the machine may be busy.
    const ids = await Promise.all(
      Array.from({ length: 12 }, async () => queuedId(await sendOnce(rig.smtpPort, { from: attacker, to: [SUPPORT] }, raw))),
    );
    const rows = await Promise.all(ids.map((id) => waitProcessed(rig.db, id, 90_000)));
    const attackMs = Date.now() - started;
    const t0 = Date.now();
    const victim = await submit(rig, { from: uniqueEmail('victim'), to: SUPPORT, subject: 'help', text: 'My order is late.' });
    console.log(
      `12 attack mails (${raw.length} bytes each) decided in ${attackMs} ms; the next customer's mail in ${Date.now() - t0} ms; reasons: ${[...new Set(rows.map((r) => r.reason ?? r.status))].join(', ')}`,
    );
    // Identical bytes: the first is a ticket, the rest are its duplicates (or the breaker's); none failed to parse.
    expect(rows.filter((r) => r.reason === 'parse_failed')).toHaveLength(0);
    expect(victim.status).toBe('processed');
  });
});
