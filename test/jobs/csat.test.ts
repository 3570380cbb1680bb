import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/auth/password.js';
import { createUser } from '../../src/db/queries/users.js';
import { runLifecycle } from '../../src/jobs/lifecycle.js';
import { runStaffDigest } from '../../src/jobs/staff-digest.js';
import { flow, mid } from '../outbound/support/flow.js';
import { header, parse, startRelaySink, to, type ReceivedMail, type RelaySink } from '../outbound/support/relay-sink.js';
import { deliverRaw, waitInbound } from '../outbound/support/smtp-client.js';
import { buildMail } from '../outbound/support/staff-mail.js';
import { Client, startPortalApp, type PortalTestApp } from '../portal/support.js';

/**
 * The satisfaction survey (CSAT), end to end: real mail in and out, the
 * lifecycle job run at a clock the test moves forward (no waiting), and the
 * survey's links followed over HTTP without signing in. Proves: one survey
 * per solved ticket CSAT_AFTER later, whatever runs it (again, or two at
 * once), none with CSAT=off; Good, Bad (replacing Good) and a comment (with
 * CSRF); forged links refused; links dead once the ticket is closed; the
 * rating shown to staff in notifications, the portal, the digest and
 * /metrics; English and Japanese.
 */
const HOUR = 3_600_000;
const PASSWORD = 'Correct-Horse-9';
const DAY = 24 * HOUR;
let sink: RelaySink;
let app: PortalTestApp;
let alice: { id: number; email: string };
const { openTicket, staffAnswers, ticket } = flow(() => ({ app, sink, staffEmail: alice.email, dkim: undefined }));

beforeAll(async () => {
  sink = await startRelaySink();
  app = await startPortalApp({ REPLYLINE_ROLES: 'all', OUTBOUND_SMTP_URL: sink.url, STAFF_AUTH: 'token', DNS_SERVERS: '127.0.0.1:9' });
  alice = await createUser(app.ctx.db, { email: 'alice@corp.test', name: 'Alice Agent', role: 'staff' });
});
afterAll(async () => {
  await app?.teardown();
  await sink?.stop();
});

const later = (ms: number) => new Date(Date.now() + ms);
const surveysTo = (ticketId: number) =>
  app.ctx.db
    .selectFrom('outbound_mails')
    .select('id')
    .where('kind', '=', 'ticket_lifecycle')
    .where(sql<string>`payload ->> 'event'`, '=', 'csat')
    .where('ticket_id', '=', ticketId)
    .execute();
/** The survey as the customer received it (matched by the Message-ID of its outbox row). */
async function surveyMail(ticketId: number) {
  const [row] = await app.ctx.db
    .selectFrom('outbound_mails')
    .select('message_id')
    .where('kind', '=', 'ticket_lifecycle')
    .where(sql<string>`payload ->> 'event'`, '=', 'csat')
    .where('ticket_id', '=', ticketId)
    .execute();
  const [mail] = await sink.waitFor((m) => header(m, 'Message-ID') === `<${row!.message_id}>`);
  return mail!;
}
const rating = (ticketId: number) =>
  app.ctx.db.selectFrom('tickets').select(['csat_rating', 'csat_comment']).where('id', '=', ticketId).executeTakeFirstOrThrow();

/** A solved ticket: the customer mails in, Alice answers with #status solved. */
async function solvedTicket(customer: string, subject: string) {
  const opened = await openTicket(customer, subject);
  await staffAnswers(opened.notification, '#status solved\nFixed: the toner was upside down.');
  expect((await ticket(opened.ticketId)).status).toBe('solved');
  return opened;
}

async function surveyLinks(mail: ReceivedMail) {
  const text = (await parse(mail)).text ?? '';
  const good = /(https?:\/\/\S+\/satisfaction\/\S+\/good)/.exec(text)?.[1];
  const bad = /(https?:\/\/\S+\/satisfaction\/\S+\/bad)/.exec(text)?.[1];
  expect(good && bad, text).toBeTruthy();
  return { text, good: good!, bad: bad! };
}

describe('satisfaction survey', () => {
  it('asks once, CSAT_AFTER after solving; Good, then Bad with a comment; staff see it everywhere; dead after close (en)', async () => {
    const customer = `csat-${Date.now()}@customer.test`;
    const { ticketId, ack, byTicket } = await solvedTicket(customer, 'Printer jams');

    expect((await runLifecycle(app.ctx, later(23 * HOUR))).surveyed).toBe(0);
    expect((await runLifecycle(app.ctx, later(25 * HOUR))).surveyed).toBe(1);
    expect((await runLifecycle(app.ctx, later(26 * HOUR))).surveyed).toBe(0);
    expect(await surveysTo(ticketId)).toHaveLength(1);

    const survey = await surveyMail(ticketId);
    expect(survey.rcptTo).toEqual([customer]);
    const parsed = await parse(survey);
    expect(parsed.subject).toBe(`How would you rate the support you received? (#${ticketId} Printer jams)`);
    expect(header(survey, 'In-Reply-To')).toBeTruthy();
    const { good, bad } = await surveyLinks(survey);
    expect(good.startsWith(`${app.base}/satisfaction/`)).toBe(true);

    // One click, no sign-in: Good.
    const browser = new Client(app.base);
    const page = await browser.get(good.replace(app.base, ''));
    expect(page.status).toBe(200);
    expect(page.html).toContain(`You rated request #${ticketId}`);
    expect(page.headers.get('referrer-policy')).toBe('same-origin');
    expect(await rating(ticketId)).toEqual({ csat_rating: 'good', csat_comment: null });

    // Bad replaces Good; the comment form needs the CSRF token.
    await browser.get(bad.replace(app.base, ''));
    expect((await rating(ticketId)).csat_rating).toBe('bad');
    const path = new URL(bad).pathname.replace(/\/bad$/, '');
    expect((await browser.post(path, { comment: 'Took two days.' }, { csrf: 'forged' })).status).toBe(403);
    const saved = await browser.post(path, { comment: 'Took two days.' });
    expect(saved.status).toBe(200);
    expect(saved.html).toContain('was saved');
    expect(await rating(ticketId)).toEqual({ csat_rating: 'bad', csat_comment: 'Took two days.' });
    // Without a rating in the path (where the language switcher returns): the current rating and comment.
    expect((await browser.get(path)).html).toMatch(/data-rating="bad"[\s\S]*>Took two days\.<\/textarea>/);

    // Forged or borrowed links are refused like unknown pages.
    const token = path.split('/').pop()!;
    const [t, u, sig] = token.split('.');
    const flipped = `${sig![0] === 'a' ? 'b' : 'a'}${sig!.slice(1)}`;
    expect((await browser.get(`/satisfaction/${t}.${u}.${flipped}/good`)).status).toBe(404);
    expect((await browser.get(`/satisfaction/${t}.${alice.id}.${sig}/good`)).status).toBe(404);
    expect((await rating(ticketId)).csat_rating).toBe('bad');

    // Staff see the rating: /metrics, the portal, and the next notification once the customer writes again.
    const metrics = await (await fetch(`${app.base}/metrics`)).text();
    expect(metrics).toMatch(/replyline_csat_ratings\{rating="bad"\} 1/);
    await app.ctx.db
      .updateTable('users')
      .set({ password_hash: await hashPassword(PASSWORD) })
      .where('id', '=', alice.id)
      .execute();
    const staffBrowser = new Client(app.base);
    expect((await staffBrowser.login(alice.email, PASSWORD)).status).toBe(303);
    const staffPage = await staffBrowser.get(`/requests/${ticketId}`);
    expect(staffPage.html).toMatch(/id="request-csat" data-rating="bad">Bad — “Took two days.”/);
    const replyTo = (await parse(ack)).replyTo!.value[0]!.address!;
    const againMid = mid('cust-again');
    await deliverRaw(
      app.smtp!.port,
      await buildMail({
        from: customer,
        to: replyTo,
        subject: 'Re: Printer jams',
        text: 'It jams again.',
        headers: { 'Message-ID': `<${againMid}>` },
      }),
      { from: customer, to: [replyTo] },
    );
    expect((await waitInbound(app.ctx.db, againMid)).ticket_id).toBe(ticketId);
    const staffMails = await sink.waitFor((m) => to(alice.email)(m) && byTicket(m), 2);
    expect((await parse(staffMails[1]!)).text).toContain('Satisfaction: Bad "Took two days."');

    // The digest lists the reopened ticket with its rating and counts the day's ratings.
    await runStaffDigest(app.ctx, new Date());
    const [digest] = await sink.waitFor((m) => to(alice.email)(m) && /queue for/.test(m.raw.toString()));
    const digestText = (await parse(digest!)).text ?? '';
    expect(digestText).toContain('rated Bad');
    expect(digestText).toContain('Satisfaction in the last 24 hours: 0 good, 1 bad.');

    // Solved again, then closed by the lifecycle: the links stop working, the rating stays.
    await staffAnswers(staffMails[1]!, '#status solved\nReplaced the roller.');
    expect((await runLifecycle(app.ctx, later(5 * DAY))).closed).toBeGreaterThanOrEqual(1);
    expect((await ticket(ticketId)).status).toBe('closed');
    const closed = await browser.get(good.replace(app.base, ''));
    expect(closed.status).toBe(410);
    expect(closed.html).toContain('can no longer be rated');
    expect((await rating(ticketId)).csat_rating).toBe('bad');
  });

  it('in Japanese for a Japanese requester; exactly once with two runs at once; nothing with CSAT=off', async () => {
    const customer = `csat-ja-${Date.now()}@customer.test`;
    const { ticketId } = await solvedTicket(customer, 'プリンター');
    const requester = (await ticket(ticketId)).requester_id;
    await app.ctx.db.updateTable('users').set({ locale: 'ja' }).where('id', '=', requester).execute();

    const off = { ...app.ctx, config: { ...app.ctx.config, CSAT: false } };
    expect((await runLifecycle(off, later(2 * DAY))).surveyed).toBe(0);

    const runs = await Promise.all([runLifecycle(app.ctx, later(2 * DAY)), runLifecycle(app.ctx, later(2 * DAY))]);
    expect(runs.reduce((n, r) => n + r.surveyed, 0)).toBe(1);
    expect(await surveysTo(ticketId)).toHaveLength(1);

    const survey = await surveyMail(ticketId);
    const { text, good } = await surveyLinks(survey);
    expect((await parse(survey)).subject).toBe(`サポートの評価をお聞かせください（#${ticketId} プリンター）`);
    expect(text).toContain('今回のサポートはいかがでしたか？');
    const customerBrowser = new Client(app.base);
    const choose = await customerBrowser.get(new URL(good).pathname.replace(/\/good$/, ''));
    expect(choose.html).toContain('今回のサポートはいかがでしたか？');
    expect((await rating(ticketId)).csat_rating).toBeNull();
    const page = await customerBrowser.get(good.replace(app.base, ''));
    expect(page.html).toContain('「良い」と評価しました');
    expect((await rating(ticketId)).csat_rating).toBe('good');
  });
});
