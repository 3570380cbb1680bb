import { UnrecoverableError } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RetryLaterError } from '../../src/jobs/define-job.js';
import { deliverOutbound } from '../../src/jobs/outbound/deliver-batch.js';
import { sendMailJob } from '../../src/jobs/send-mail.js';
import { insertOutboundMail } from '../../src/mail/outbox.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { outboundRow, seedTicket } from './support/fixtures.js';
import { startRelaySink, to, type RelaySink } from './support/relay-sink.js';

/**
 * The rows of one send-mail job share one transaction
 * (deliver-batch.ts). Every row must still get exactly the outcome it gets
 * alone: sent once, retried, failed with the relay's reply, suppressed by
 * a breaker that counts the batch's own mail, or skipped.
 */
let sink: RelaySink;
let app: TestApp;

beforeAll(async () => {
  sink = await startRelaySink();
  app = await startTestApp({
    REPLYLINE_ROLES: 'portal',
    OUTBOUND_SMTP_URL: sink.url,
    ACK_MAX_PER_SENDER_PER_HOUR: '1',
    OUTBOUND_CONCURRENCY: '8',
  });
});
afterAll(async () => {
  await app?.teardown();
  await sink?.stop();
});

async function row(kind: 'ticket_update' | 'acknowledgement', t: Awaited<ReturnType<typeof seedTicket>>, recipient = t.customer.email) {
  return insertOutboundMail(app.ctx.db, app.ctx.config, {
    kind,
    recipient,
    userId: t.customer.id,
    locale: 'en',
    ticketId: t.ticketId,
    ticketMessageId: t.messageId,
    payload: {},
  });
}

describe('a batch of outbox rows', () => {
  it('gives each row its own outcome: sent, relay 5xx, relay 4xx, breaker, already sent', async () => {
    const [a, b, c, d, e] = await Promise.all(Array.from({ length: 5 }, () => seedTicket(app.ctx.db)));
    const ok = await row('ticket_update', a!);
    const refused = await row('ticket_update', b!);
    const later = await row('ticket_update', c!);
    // Two acknowledgements to one address with a limit of one an hour: the second must see the first as sent.
    const ack1 = await row('acknowledgement', d!);
    const ack2 = await row('acknowledgement', d!);
    const done = await row('ticket_update', e!);
    await app.ctx.db.updateTable('outbound_mails').set({ status: 'sent', sent_at: new Date() }).where('id', '=', done.id).execute();
    sink.rejectRecipients.set(b!.customer.email, { code: 550, message: '5.1.1 No such user' });
    sink.rejectRecipients.set(c!.customer.email, { code: 451, message: '4.3.0 Try later' });

    const ids = [ok.id, refused.id, later.id, ack1.id, ack2.id, done.id];
    const outcomes = await deliverOutbound(app.ctx, ids);

    const type = (id: number) => outcomes.get(id)?.type;
    expect([type(ok.id), type(refused.id), type(later.id), type(ack1.id), type(ack2.id), type(done.id)]).toEqual([
      'sent',
      'permanent',
      'temporary',
      'sent',
      'suppressed',
      'skipped',
    ]);

    const status = async (id: number) => {
      const r = await outboundRow(app.ctx.db, id);
      return [r.status, r.last_error?.split(':')[0] ?? null, r.attempts];
    };
    expect(await status(ok.id)).toEqual(['sent', null, 1]);
    expect(await status(refused.id)).toEqual(['failed', '550 5.1.1 No such user', 1]);
    expect(await status(later.id)).toEqual(['queued', '451 4.3.0 Try later', 1]);
    expect(await status(ack1.id)).toEqual(['sent', null, 1]);
    expect(await status(ack2.id)).toEqual(['suppressed', 'ack_limit', 0]);
    expect(await status(done.id)).toEqual(['sent', null, 0]);

    expect(sink.received.filter(to(a!.customer.email))).toHaveLength(1);
    expect(sink.received.filter(to(d!.customer.email))).toHaveLength(1);
    expect(sink.received.filter(to(e!.customer.email))).toHaveLength(0);

    // The job is retried (a row waits for its retry); the retry sends nothing twice and then completes.
    sink.rejectRecipients.clear();
    await expect(sendMailJob.handler(app.ctx, { ids })).resolves.toEqual({ mails: ids.length });
    expect(sink.received.filter(to(a!.customer.email))).toHaveLength(1);
    expect(sink.received.filter(to(c!.customer.email))).toHaveLength(1);
    expect(await status(later.id)).toEqual(['sent', null, 2]);
  });

  it('two batches holding the same rows at once send each mail once', async () => {
    const tickets = await Promise.all(Array.from({ length: 6 }, () => seedTicket(app.ctx.db)));
    const rows = await Promise.all(tickets.map((t) => row('ticket_update', t)));
    const ids = rows.map((r) => r.id);
    const [x, y] = await Promise.all([deliverOutbound(app.ctx, ids), deliverOutbound(app.ctx, [...ids].reverse())]);
    for (const t of tickets) expect(sink.received.filter(to(t.customer.email))).toHaveLength(1);
    // Each row was sent by exactly one batch; the other waited and found it sent, or found it locked (its job retries).
    for (const id of ids) {
      const pair = [x.get(id)!.type, y.get(id)!.type].sort();
      expect(pair[0] === 'sent' ? pair[1] : pair).toMatch(/^(skipped|locked)$/);
    }
    for (const id of ids) expect((await outboundRow(app.ctx.db, id)).status).toBe('sent');
  });

  it('a job retries while a row waits for a retry, and fails for good only when its rows failed for good', async () => {
    const [a, b] = await Promise.all([seedTicket(app.ctx.db), seedTicket(app.ctx.db)]);
    const later = await row('ticket_update', a!);
    const refused = await row('ticket_update', b!);
    sink.rejectRecipients.set(a!.customer.email, { code: 451, message: '4.3.0 Try later' });
    sink.rejectRecipients.set(b!.customer.email, { code: 550, message: '5.1.1 No such user' });
    await expect(sendMailJob.handler(app.ctx, { ids: [later.id, refused.id] })).rejects.toBeInstanceOf(RetryLaterError);
    // The retry: the refused row is failed already, the other is refused for good now.
    sink.rejectRecipients.set(a!.customer.email, { code: 550, message: '5.1.1 No such user' });
    await expect(sendMailJob.handler(app.ctx, { ids: [later.id, refused.id] })).rejects.toBeInstanceOf(UnrecoverableError);
    expect((await outboundRow(app.ctx.db, later.id)).status).toBe('failed');
    expect((await outboundRow(app.ctx.db, refused.id)).status).toBe('failed');
    sink.rejectRecipients.clear();
  });
});
