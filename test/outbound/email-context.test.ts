import { sql } from 'kysely';
import { type Browser } from 'playwright-core';
import { launchChromium } from '../support/chromium.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser } from '../../src/db/queries/users.js';
import { Client } from '../portal/support.js';
import { customerAddress, givePassword, ofTicket, PASSWORD, startEmailOnlyRig, type EmailOnlyRig } from './support/email-only.js';
import { mid } from './support/flow.js';
import { header, parse, to, type ReceivedMail } from './support/relay-sink.js';
import { deliverRaw, waitInbound } from './support/smtp-client.js';
import { buildMail } from './support/staff-mail.js';

/**
 * What people who only use email receive, over real SMTP both ways, on one
 * request that goes back and forth (MAIL_HISTORY_MESSAGES=1, so "the original
 * request for a newcomer" is visible apart from the ordinary history):
 * no second copy for someone the author copied directly, the recent history
 * below every new message in the recipient's language, the original request
 * in a late CC's first mail, internal notes to the other staff only, and the
 * customer's portal reply and "solved" reaching staff. Then Chromium: the
 * customer never sees an agent's raw mail.
 */
let rig: EmailOnlyRig;
let browser: Browser;

beforeAll(async () => {
  rig = await startEmailOnlyRig({ MAIL_HISTORY_MESSAGES: '1' });
  browser = await launchChromium();
}, 120_000);
afterAll(async () => {
  await browser?.close();
  await rig?.stop();
});

const customer = customerAddress('carol');
const dan = customerAddress('dan');
const erin = customerAddress('erin');
let ticketId = 0;
let customerReplyTo = '';

const containing = (rcpt: string, text: string) => (m: ReceivedMail) => to(rcpt)(m) && ofTicket(ticketId)(m) && m.raw.includes(text);
/** The first mail to `rcpt` on this ticket whose decoded text holds `text` (the raw bytes may be base64 or QP). */
async function mailTo(rcpt: string, text: string): Promise<{ raw: ReceivedMail; text: string; html: string }> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    for (const m of rig.sink.received.filter((r) => to(rcpt)(r) && ofTicket(ticketId)(r))) {
      const p = await parse(m);
      if ((p.text ?? '').includes(text)) return { raw: m, text: p.text ?? '', html: String(p.html) };
    }
    if (Date.now() > deadline) throw new Error(`no mail to ${rcpt} containing "${text}"`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
async function outboxOfMessage(text: string) {
  return rig.app.ctx.db
    .selectFrom('outbound_mails as o')
    .innerJoin('messages as m', 'm.id', 'o.ticket_message_id')
    .select(['o.recipient', 'o.kind', 'o.status'])
    .where('m.ticket_id', '=', ticketId)
    .where('m.body_text', 'like', `%${text}%`)
    .execute();
}
/** The mail of the sent staff notification of this event to this recipient (Japanese text is encoded in the raw bytes). */
async function sentNotification(rcpt: string, event: string): Promise<ReceivedMail> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const row = await rig.app.ctx.db
      .selectFrom('outbound_mails')
      .select('message_id')
      .where('recipient', '=', rcpt)
      .where('ticket_id', '=', ticketId)
      .where('status', '=', 'sent')
      .where(sql<string>`payload->>'event'`, '=', event)
      .executeTakeFirst();
    if (row) return (await rig.sink.waitFor((m) => header(m, 'Message-ID') === `<${row.message_id}>`))[0]!;
    if (Date.now() > deadline) throw new Error(`no sent ${event} notification to ${rcpt}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until every outbox row of the message is settled, so "nobody else was mailed" is a final answer. */
async function settled(text: string) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const rows = await outboxOfMessage(text);
    if (rows.length > 0 && rows.every((r) => r.status !== 'queued')) return rows;
    if (Date.now() > deadline) throw new Error(`outbox of "${text}" not settled: ${JSON.stringify(rows)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('context and no duplicates', () => {
  it("a CC copied on the customer's first mail is not mailed it again", async () => {
    const messageId = mid('cust');
    const raw = await buildMail({
      from: `Carol <${customer}>`,
      to: 'support@help.test',
      cc: `Dan <${dan}>`,
      subject: 'Printer on fire',
      text: 'My printer is on fire.',
      headers: { 'Message-ID': `<${messageId}>` },
    });
    await deliverRaw(rig.app.smtp!.port, raw, { from: customer, to: ['support@help.test'] });
    ticketId = (await waitInbound(rig.app.ctx.db, messageId)).ticket_id!;
    const ack = await mailTo(customer, 'password/new');
    customerReplyTo = (await parse(ack.raw)).replyTo!.value[0]!.address!;
    await mailTo(rig.alice.email, 'My printer is on fire.');
    expect((await settled('My printer is on fire.')).map((r) => r.recipient)).not.toContain(dan);
  });

  it("the agent's answer reaches customer and CC with the request quoted below it", async () => {
    const note = await mailTo(rig.alice.email, 'My printer is on fire.');
    await rig.flow.staffAnswers(note.raw, '#status pending\n\nWe are sending a fire engine.');
    for (const rcpt of [customer, dan]) {
      const m = await mailTo(rcpt, 'We are sending a fire engine.');
      const history = m.text.indexOf('Earlier in this request (newest first)');
      expect(history).toBeGreaterThan(m.text.indexOf('We are sending a fire engine.'));
      expect(m.text.slice(history)).toContain('> My printer is on fire.');
      expect(m.html).toContain('Earlier in this request');
    }
  });

  it("the customer's reply copying Dan directly: staff are notified with history (even Bob, also in Cc), Dan gets no second copy", async () => {
    const ackMid = header((await rig.sink.waitFor(containing(customer, 'password/new')))[0]!, 'Message-ID');
    const messageId = mid('cust');
    const raw = await buildMail({
      from: `Carol <${customer}>`,
      to: customerReplyTo,
      // Bob (staff) named in Cc too: a Cc header is only a claim, so staff are notified regardless.
      cc: [`Dan <${dan}>`, rig.bob.email],
      subject: 'Re: Printer on fire',
      text: 'It is still on fire.\n\nOn Monday, Help Desk wrote:\n> We are sending a fire engine.',
      inReplyTo: ackMid,
      headers: { 'Message-ID': `<${messageId}>` },
    });
    await deliverRaw(rig.app.smtp!.port, raw, { from: customer, to: [customerReplyTo] });
    expect((await waitInbound(rig.app.ctx.db, messageId)).status).toBe('processed');

    const forAlice = await mailTo(rig.alice.email, 'It is still on fire.');
    const cut = forAlice.text.indexOf('Earlier in this request');
    expect(forAlice.text.slice(cut)).toContain('> We are sending a fire engine.');
    // MAIL_HISTORY_MESSAGES=1, and Alice has heard of this request before: no original again.
    expect(forAlice.text.slice(cut)).not.toContain('My printer is on fire.');
    const forBob = await mailTo(rig.bob.email, 'It is still on fire.');
    expect(forBob.text).toContain('これまでのやり取り（新しい順）');
    expect(forBob.text).toContain('さんがリクエスト');

    const rows = await settled('It is still on fire.');
    expect(rows.map((r) => r.recipient).sort()).toEqual([rig.alice.email, rig.bob.email].sort());
  });

  it('a CC added later gets the original request in their first mail, in their language', async () => {
    await createUser(rig.app.ctx.db, { email: erin, locale: 'ja' });
    const note = await mailTo(rig.alice.email, 'It is still on fire.');
    await rig.flow.staffAnswers(note.raw, `#cc add ${erin}\n\nA second engine is on its way.`);
    const forErin = await mailTo(erin, 'A second engine is on its way.');
    const cut = forErin.text.indexOf('これまでのやり取り（新しい順）');
    expect(cut).toBeGreaterThan(0);
    const history = forErin.text.slice(cut);
    expect(history).toContain('> It is still on fire.');
    expect(history).toContain('> My printer is on fire.');
    // Newest first.
    expect(history.indexOf('It is still on fire.')).toBeLessThan(history.indexOf('My printer is on fire.'));
    // The customer has seen the start: only the last message is quoted.
    const forCustomer = await mailTo(customer, 'A second engine is on its way.');
    expect(forCustomer.text).not.toContain('My printer is on fire.');
    expect(forCustomer.text).toContain('> It is still on fire.');
  });
});

describe('everyone who should know, knows', () => {
  it('an internal #note goes to the other staff (Japanese for Bob), never to customers', async () => {
    const note = await mailTo(rig.alice.email, 'It is still on fire.');
    await rig.flow.staffAnswers(note.raw, '#note\n\nCheck the warranty before we send a third engine.');
    const forBob = await mailTo(rig.bob.email, 'Check the warranty');
    expect(forBob.text).toContain('社内メモを追加しました');
    expect(forBob.text).toContain('これは社内メモです');
    expect(header(forBob.raw, 'In-Reply-To')).toBeTruthy();
    expect(header(forBob.raw, 'Auto-Submitted')).toBe('auto-generated');
    const rows = await settled('Check the warranty');
    expect(rows.map((r) => r.recipient)).toEqual([rig.bob.email]);
  });

  it('the customer\'s portal reply notifies staff and the other participants; "solved" in the portal notifies staff', async () => {
    await givePassword(rig, customer);
    const web = new Client(rig.base);
    expect((await web.login(customer, PASSWORD)).status).toBe(303);
    await web.get(`/requests/${ticketId}`);
    const form = new FormData();
    form.set('body', 'Fire is out, thanks from the portal.');
    const photo = Buffer.from(`%PDF-1.4 burnt printer ${Date.now()}`);
    form.set('files', new File([photo], 'burnt.pdf', { type: 'application/pdf' }));
    expect((await web.postMultipart(`/requests/${ticketId}/comments`, form)).status).toBe(303);
    const forAlice = await mailTo(rig.alice.email, 'Fire is out, thanks from the portal.');
    expect(forAlice.text).toContain('replied to request');
    // The file uploaded in the portal reaches staff as an attachment, byte for byte.
    expect((await parse(forAlice.raw)).attachments.find((a) => a.filename === 'burnt.pdf')?.content.equals(photo)).toBe(true);
    const forBob = await mailTo(rig.bob.email, 'Fire is out, thanks from the portal.');
    expect(forBob.text).toContain('返信しました');
    await mailTo(dan, 'Fire is out, thanks from the portal.');
    const forErin = await mailTo(erin, 'Fire is out, thanks from the portal.');
    expect(forErin.text).toContain('さんがリクエスト');

    await web.get(`/requests/${ticketId}`);
    expect((await web.post(`/requests/${ticketId}/solve`, {})).status).toBe(303);
    const [solvedEn] = await rig.sink.waitFor((m) => to(rig.alice.email)(m) && ofTicket(ticketId)(m) && m.raw.includes('as solved'));
    const en = await parse(solvedEn!);
    expect(en.text).toContain(`marked request #${ticketId} as solved`);
    expect(en.text).toContain('> Fire is out, thanks from the portal.');
    expect(header(solvedEn!, 'References')).toBeTruthy();
    const solvedJa = await sentNotification(rig.bob.email, 'customer_solved');
    expect((await parse(solvedJa)).text).toContain('解決済みにしました');
  });
});

describe('what customers see of staff mail (Chromium)', () => {
  it("a customer sees only the cleaned reply of an agent's mail, can expand their own original; staff see the agent's original", async () => {
    await givePassword(rig, rig.alice.email);
    const signIn = async (email: string) => {
      const context = await browser.newContext({ locale: 'en-US' });
      const page = await context.newPage();
      await page.goto(`${rig.base}/login`);
      await page.getByLabel('Email address').fill(email);
      await page.getByLabel('Password').fill(PASSWORD);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL(`${rig.base}/requests`);
      await page.goto(`${rig.base}/requests/${ticketId}`);
      return { page, context };
    };
    const agentMessage = rig.app.ctx.db
      .selectFrom('messages')
      .select('id')
      .where('ticket_id', '=', ticketId)
      .where('body_text', '=', 'We are sending a fire engine.');
    const ownMessage = rig.app.ctx.db
      .selectFrom('messages')
      .select('id')
      .where('ticket_id', '=', ticketId)
      .where('body_text', 'like', 'It is still on fire.%');
    const agentId = (await agentMessage.executeTakeFirstOrThrow()).id;
    const ownId = (await ownMessage.executeTakeFirstOrThrow()).id;

    const asCustomer = await signIn(customer);
    const page = asCustomer.page;
    const agent = page.locator(`#message-${agentId}`);
    expect(await agent.innerText()).toContain('We are sending a fire engine.');
    expect(await agent.locator('details.original').count()).toBe(0);
    const all = await page.locator('main').innerText();
    for (const leak of ['Reply to this email to answer the customer', '#status', 'Requester:', 'Check the warranty'])
      expect(all).not.toContain(leak);
    expect(await page.content()).not.toContain('answer the customer');
    // Their own mail keeps its "show the original".
    const own = page.locator(`#message-${ownId}`);
    await own.getByText('Show the full original message').click();
    expect(await own.locator('details.original').innerText()).toContain('On Monday, Help Desk wrote:');
    await asCustomer.context.close();

    const asStaff = await signIn(rig.alice.email);
    const staffView = asStaff.page.locator(`#message-${agentId}`);
    await staffView.getByText('Show the full original message').click();
    expect(await staffView.locator('details.original').innerText()).toContain('Reply to this email to answer the customer');
    await asStaff.context.close();
  });
});
