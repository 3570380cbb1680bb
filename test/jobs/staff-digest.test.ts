import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser } from '../../src/db/queries/users.js';
import { localDate, runStaffDigest, scheduleStaffDigest } from '../../src/jobs/staff-digest.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { flow } from '../outbound/support/flow.js';
import { parse, startRelaySink, to, type RelaySink } from '../outbound/support/relay-sink.js';

/**
 * The daily staff digest, end to end: tickets opened by real mail, owned by
 * #assign, the digest run at a clock the test chooses, the mails read back
 * from the relay sink.
 */
let sink: RelaySink;
let app: TestApp;
let alice: { id: number; email: string };
let bob: { id: number; email: string };
const { openTicket, staffAnswers } = flow(() => ({ app, sink, staffEmail: alice.email, dkim: undefined }));

beforeAll(async () => {
  sink = await startRelaySink();
  app = await startTestApp({
    OUTBOUND_SMTP_URL: sink.url,
    STAFF_AUTH: 'token',
    DNS_SERVERS: '127.0.0.1:9',
    STAFF_DIGEST_TIME_ZONE: 'Asia/Tokyo',
  });
  alice = await createUser(app.ctx.db, { email: 'alice@corp.test', name: 'Alice Agent', role: 'staff' });
  bob = await createUser(app.ctx.db, { email: 'bob@corp.test', name: 'Bob Agent', role: 'staff', locale: 'ja' });
});
afterAll(async () => {
  await app?.teardown();
  await sink?.stop();
});

const digestsTo = (email: string) =>
  app.ctx.db
    .selectFrom('outbound_mails')
    .select(['id', 'payload'])
    .where('kind', '=', 'staff_digest')
    .where('recipient', '=', email)
    .execute();

describe('staff digest', () => {
  it('mails each agent their open tickets and every unassigned one, oldest first, once per local day, in their language', async () => {
    // Nothing is open yet: nobody gets an empty digest.
    expect((await runStaffDigest(app.ctx, new Date('2026-12-01T00:00:00Z'))).queued).toBe(0);

    const stamp = Date.now();
    const first = await openTicket(`d1-${stamp}@customer.test`, 'Oldest: printer');
    const second = await openTicket(`d2-${stamp}@customer.test`, 'Middle: scanner');
    const third = await openTicket(`d3-${stamp}@customer.test`, 'Newest: fax');
    // Alice takes the middle one and marks it urgent; the others stay in the queue.
    await staffAnswers(second.notification, '#assign me\n#priority urgent\n#note mine');
    // The oldest is solved: not open any more, so in nobody's digest.
    await staffAnswers(first.notification, '#status solved\nDone.');

    // 09:00 in Tokyo on 3 December is 00:00 UTC: the local date decides the day.
    const at = new Date('2026-12-03T00:00:00Z');
    expect(localDate(at, 'Asia/Tokyo')).toBe('2026-12-03');
    const runs = await Promise.all([runStaffDigest(app.ctx, at), runStaffDigest(app.ctx, at)]);
    expect(runs.reduce((n, r) => n + r.queued, 0)).toBe(2); // Alice and Bob, once each, however many workers run it
    expect((await runStaffDigest(app.ctx, new Date('2026-12-03T10:00:00Z'))).queued).toBe(0); // same Tokyo day

    const [aliceMail] = await sink.waitFor((m) => to(alice.email)(m) && /queue for 2026-12-03/.test(m.raw.toString()));
    const a = await parse(aliceMail!);
    expect(a.subject).toBe('Your support queue for 2026-12-03: 2 open');
    const text = a.text ?? '';
    // Oldest first; her own ticket marked as hers with its priority; the solved one absent.
    expect(text.indexOf(`#${second.ticketId}`)).toBeLessThan(text.indexOf(`#${third.ticketId}`));
    expect(text).toMatch(new RegExp(`#${second.ticketId} +Middle: scanner\\n +Yours · waiting \\d+ min · New · Urgent priority`));
    expect(text).toMatch(new RegExp(`#${third.ticketId} +Newest: fax\\n +Unassigned · waiting`));
    expect(text).not.toContain(`#${first.ticketId} `);

    // Bob (Japanese) sees only the unassigned ticket: Alice's is not his.
    const [bobMail] = await sink.waitFor((m) => to(bob.email)(m) && m.raw.toString().includes('2026-12-03'));
    const b = await parse(bobMail!);
    expect(b.subject).toBe('2026-12-03 のサポート対応状況: 未解決 1 件');
    expect(b.text).toContain(`#${third.ticketId}`);
    expect(b.text).toContain('未割り当て');
    expect(b.text).not.toContain(`#${second.ticketId}`);

    // The next day is a new digest.
    expect((await runStaffDigest(app.ctx, new Date('2026-12-04T00:00:00Z'))).queued).toBe(2);
    expect(await digestsTo(alice.email)).toHaveLength(2);
  });

  it('is scheduled as one daily cron job in the configured time zone, and removed with STAFF_DIGEST_AT=off', async () => {
    const schedulers = async () => (await app.ctx.queues.outbound.getJobSchedulers()).filter(Boolean);
    const registered = Date.now() + 10_000;
    while (!(await schedulers()).some((s) => s.key === 'staff-digest') && Date.now() < registered)
      await new Promise((r) => setTimeout(r, 100));
    expect((await schedulers()).find((s) => s.key === 'staff-digest')).toMatchObject({ pattern: '0 9 * * *', tz: 'Asia/Tokyo' });

    // What a worker does at start when the operator set STAFF_DIGEST_AT=off.
    await scheduleStaffDigest({ ...app.ctx, config: { ...app.ctx.config, STAFF_DIGEST_AT: null } });
    expect((await schedulers()).map((s) => s.key)).not.toContain('staff-digest');
  });
});
