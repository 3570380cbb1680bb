import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser } from '../../src/db/queries/users.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { flow } from './support/flow.js';
import { header, parse, startRelaySink, to, type ReceivedMail, type RelaySink } from './support/relay-sink.js';

/**
 * Two agents on one customer message, from their mail clients, over real
 * SMTP both ways (staff identified by their reply tokens): the FYI to the
 * other notified agent, threaded under the notification they got; a second
 * reply to the same customer message held as `collision` with a notice that
 * quotes the colleague's answer; `#send` in reply to that notice forcing it
 * out; and what is *not* a collision (a reply to the FYI, a reply after
 * COLLISION_WINDOW). English for Alice, Japanese for Bob.
 */
let sink: RelaySink;
let app: TestApp;
let alice: { id: number; email: string };
let bob: { id: number; email: string };
const asAlice = flow(() => ({ app, sink, staffEmail: alice.email, dkim: undefined }));
const asBob = flow(() => ({ app, sink, staffEmail: bob.email, dkim: undefined }));
const bobFrom = { from: 'Bob Agent <bob@corp.test>', mailFrom: 'bob@corp.test' };

beforeAll(async () => {
  sink = await startRelaySink();
  app = await startTestApp({ OUTBOUND_SMTP_URL: sink.url, STAFF_AUTH: 'token', DNS_SERVERS: '127.0.0.1:9', COLLISION_WINDOW: '2m' });
  alice = await createUser(app.ctx.db, { email: 'alice@corp.test', name: 'Alice Agent', role: 'staff' });
  bob = await createUser(app.ctx.db, { email: 'bob@corp.test', name: 'Bob Agent', role: 'staff', locale: 'ja' });
});
afterAll(async () => {
  await app?.teardown();
  await sink?.stop();
});

const text = async (m: ReceivedMail) => (await parse(m)).text ?? '';

async function inboundRow(id: number) {
  return app.ctx.db.selectFrom('inbound_messages').select(['status', 'reason', 'ticket_id']).where('id', '=', id).executeTakeFirstOrThrow();
}

async function waitProcessed(id: number) {
  const end = Date.now() + 15_000;
  for (;;) {
    const row = await inboundRow(id);
    if (row.status === 'processed') return row;
    if (Date.now() > end) throw new Error(`inbound ${id} still ${row.status}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function publicTexts(ticketId: number) {
  const rows = await asAlice.messages(ticketId);
  return rows.filter((m) => m.visibility === 'public').map((m) => m.body_text);
}

describe('collisions between agents', () => {
  it('FYI to the other agent, a second reply held with a notice, #send forces it out (ja)', async () => {
    const customer = `col-${Date.now()}@customer.test`;
    const { ticketId, notification: aliceNote, byTicket } = await asAlice.openTicket(customer, 'Printer on fire');
    const [bobNote] = await sink.waitFor((m) => to(bob.email)(m) && byTicket(m));

    await asAlice.staffAnswers(aliceNote, 'Unplug it, we are on our way.');
    // Bob, who was notified too, hears within seconds, in Japanese, threaded under his notification.
    const [, fyi] = await sink.waitFor((m) => to(bob.email)(m) && byTicket(m), 2);
    const fyiText = await text(fyi!);
    expect(fyiText).toContain(`参考: Alice Agent (alice@corp.test) さんがリクエスト #${ticketId} に返信しました`);
    expect(fyiText).toContain('Unplug it, we are on our way.');
    expect(header(fyi!, 'In-Reply-To')).toBe(header(bobNote!, 'Message-ID'));
    expect(header(fyi!, 'References')).toContain(header(bobNote!, 'Message-ID')!);
    // Not to the replying agent; the customer gets the reply itself, never the FYI.
    const fyiRows = await app.ctx.db
      .selectFrom('outbound_mails')
      .select('recipient')
      .where('ticket_id', '=', ticketId)
      .where(({ ref }) => ref('payload', '->>').key('event' as never), '=', 'staff_reply')
      .execute();
    expect(fyiRows.map((r) => r.recipient)).toEqual([bob.email]);

    // Bob had started answering the notification before the FYI arrived: held, not sent.
    const { inbound } = await asBob.staffAnswers(bobNote!, 'Please unplug the printer.', bobFrom);
    expect(inbound).toMatchObject({ status: 'held', reason: 'collision', ticket_id: ticketId });
    expect(await publicTexts(ticketId)).not.toContain('Please unplug the printer.');
    // Bob's third mail on the ticket: notification, FYI, notice.
    const noticeMail = (await sink.waitFor((m) => to(bob.email)(m) && byTicket(m), 3))[2]!;
    const noticeText = await text(noticeMail);
    expect(noticeText).toContain(
      `Alice Agent (alice@corp.test) さんがリクエスト #${ticketId} に先に回答しました。あなたの返信は送信されていません`,
    );
    expect(noticeText).toContain('Unplug it, we are on our way.');
    expect(noticeText).toContain('#send');

    // Bob insists: `#send` in reply to the notice sends the held reply as written.
    const before = (await sink.waitFor((m) => to(customer)(m) && byTicket(m), 2)).length;
    await asBob.staffAnswers(noticeMail, '#send', bobFrom);
    expect(await waitProcessed(inbound.id)).toMatchObject({ status: 'processed', ticket_id: ticketId });
    expect(await publicTexts(ticketId)).toContain('Please unplug the printer.');
    const toCustomer = await sink.waitFor((m) => to(customer)(m) && byTicket(m), before + 1);
    expect(await text(toCustomer[before]!)).toContain('Please unplug the printer.');
  });

  it('a reply to the FYI is not a collision; a reply after COLLISION_WINDOW is not either (en)', async () => {
    const customer = `col2-${Date.now()}@customer.test`;
    const { ticketId, notification: aliceNote, byTicket } = await asAlice.openTicket(customer, 'Cannot log in');
    const [bobNote] = await sink.waitFor((m) => to(bob.email)(m) && byTicket(m));

    await asBob.staffAnswers(bobNote!, 'Reset link sent.', bobFrom);
    const [, fyi] = await sink.waitFor((m) => to(alice.email)(m) && byTicket(m), 2);
    expect(await text(fyi!)).toContain(`FYI: Bob Agent (bob@corp.test) replied to request #${ticketId}`);

    // Alice answers the FYI: she has seen Bob's answer, so hers goes out.
    const first = await asAlice.staffAnswers(fyi!, 'Adding: check your spam folder.');
    expect(first.inbound.status).toBe('processed');

    // Alice answering the original notification collides with Bob's answer, in English...
    const held = await asAlice.staffAnswers(aliceNote, 'Try another browser.');
    expect(held.inbound).toMatchObject({ status: 'held', reason: 'collision' });
    const notice = (await sink.waitFor((m) => to(alice.email)(m) && byTicket(m), 3))[2];
    expect(await text(notice!)).toMatch(/already answered request #\d+: your reply was not sent[\s\S]*#send on the first line/);

    // ...but not once Bob's answer is older than the window.
    await app.ctx.db
      .updateTable('messages')
      .set({ created_at: new Date(Date.now() - 3 * 60_000) })
      .where('ticket_id', '=', ticketId)
      .execute();
    const late = await asAlice.staffAnswers(aliceNote, 'Try another browser, then.');
    expect(late.inbound.status).toBe('processed');
  });
});
