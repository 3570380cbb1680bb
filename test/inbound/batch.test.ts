import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type Mail from 'nodemailer/lib/mailer';
import { insertInboundMessage } from '../../src/db/queries/inbound-messages.js';
import { createUser } from '../../src/db/queries/users.js';
import { RetryLaterError } from '../../src/jobs/define-job.js';
import { MAX_PROCESSING_ATTEMPTS, processInbound, processInboundBatch, processInboundMessage } from '../../src/jobs/inbound/batch.js';
import { processInboundJob } from '../../src/jobs/process-inbound.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { failingTransactions } from '../support/failing-db.js';
import { replyAddress } from './support/fixtures.js';
import { buildMail, uid } from './support/smtp.js';

/**
 * The inbound batch (jobs that run at the same time share one transaction,
 * decided in rounds and written set-wise) must decide exactly what the
 * per-message path (a batch of one) decides. The same mixed traffic goes to two replylines
 * with identical state: one processes message by message, the other in one
 * batch; every observable result is compared.
 */

let seq: TestApp;
let bat: TestApp;

beforeAll(async () => {
  // No workers: nothing but the test processes these rows.
  [seq, bat] = await Promise.all([startTestApp({ REPLYLINE_ROLES: 'smtp' }), startTestApp({ REPLYLINE_ROLES: 'smtp' })]);
});
afterAll(async () => {
  await Promise.all([seq?.teardown(), bat?.teardown()]);
});

const env = (from: string, to = ['support@help.test']) => ({
  mailFrom: from,
  rcptTo: to,
  clientAddress: '127.0.0.1',
  helo: 'client.test',
  tls: false,
});

async function store(app: TestApp, mail: Mail.Options, to?: string[]): Promise<number> {
  const from = String(mail.from ?? '').replace(/^.*<|>.*$/g, '');
  return insertInboundMessage(app.ctx.db, await buildMail(mail), env(from, to));
}

/** Identical starting state: a staff account, a known customer, and one open ticket of that customer's. */
async function seed(app: TestApp, tag: string) {
  await createUser(app.ctx.db, { email: `agent-${tag}@staff.example`, name: 'Agent', role: 'staff' });
  const known = `known-${tag}@customer.example`;
  const first = await store(app, {
    from: `Known <${known}>`,
    to: 'support@help.test',
    subject: 'Existing',
    text: 'first',
    messageId: `<existing.${tag}@customer.example>`,
  });
  const r = await processInboundMessage(app.ctx, first);
  const t = await app.ctx.db.selectFrom('tickets').select(['id', 'requester_id']).where('id', '=', r.ticketId!).executeTakeFirstOrThrow();
  return { known, ticketId: t.id, requesterId: t.requester_id };
}

/** Mixed traffic: plain first mails and every kind of message the fast path must hand back. */
function traffic(tag: string, s: { known: string; ticketId: number; requesterId: number }): Array<{ mail: Mail.Options; to?: string[] }> {
  const c = (n: string) => `${n}-${tag}@customer.example`;
  return [
    { mail: { from: `Ann <${c('ann')}>`, to: 'support@help.test', subject: 'Printer', text: 'It jams.', messageId: `<a.${tag}@x>` } },
    {
      mail: {
        from: `Ben <${c('ben')}>`,
        to: 'support@help.test',
        subject: 'Login',
        text: 'Cannot log in.\n\nOn Mon, Bob wrote:\n> old\n',
        messageId: `<b.${tag}@x>`,
      },
    },
    {
      mail: {
        from: c('jp'),
        to: 'support@help.test',
        subject: 'プリンターが動きません',
        text: 'こんにちは。印刷できません。',
        textEncoding: 'base64',
        messageId: `<jp.${tag}@x>`,
      },
    },
    // A known customer, a second mail of a new sender in the same batch, an exact re-delivery.
    { mail: { from: s.known, to: 'support@help.test', subject: 'Another', text: 'new topic', messageId: `<k.${tag}@x>` } },
    {
      mail: {
        from: `Ann <${c('ann')}>`,
        to: 'support@help.test',
        subject: 'Printer again',
        text: 'Still jams.',
        messageId: `<a2.${tag}@x>`,
      },
    },
    { mail: { from: `Ben <${c('ben')}>`, to: 'support@help.test', subject: 'Login', text: 'Cannot log in.', messageId: `<b.${tag}@x>` } },
    // Threaded, CC'd, with an attachment, machine mail, no usable From, thread evidence that proves nothing.
    {
      mail: {
        from: s.known,
        to: replyAddress(s.ticketId, s.requesterId),
        subject: 'Re: Existing',
        text: 'more',
        messageId: `<r.${tag}@x>`,
      },
      to: [replyAddress(s.ticketId, s.requesterId)],
    },
    {
      mail: {
        from: c('cat'),
        to: 'support@help.test',
        cc: c('cc'),
        subject: 'With CC',
        text: 'cc my colleague',
        messageId: `<cc.${tag}@x>`,
      },
    },
    {
      mail: {
        from: c('dan'),
        to: 'support@help.test',
        subject: 'Logs',
        text: 'attached',
        attachments: [{ filename: 'log.txt', content: 'log line' }],
        messageId: `<att.${tag}@x>`,
      },
    },
    {
      mail: {
        from: c('ooo'),
        to: 'support@help.test',
        subject: 'Out of office',
        text: 'away',
        headers: { 'Auto-Submitted': 'auto-replied' },
        messageId: `<ooo.${tag}@x>`,
      },
    },
    { mail: { from: 'not an address', to: 'support@help.test', subject: 'broken', text: 'x', messageId: `<bad.${tag}@x>` } },
    // Depends on messages of the same batch: a reply to Ann's first mail, a stranger's reply to Ben's, a mail from Cat's CC.
    {
      mail: {
        from: `Ann <${c('ann')}>`,
        to: 'support@help.test',
        subject: 'Re: Printer',
        text: 'Found the manual.',
        inReplyTo: `<a.${tag}@x>`,
        messageId: `<a3.${tag}@x>`,
      },
    },
    // Someone who is not a participant answering Ben's mail of this batch: held, as one by one.
    {
      mail: {
        from: c('fay'),
        to: 'support@help.test',
        subject: 'Re: Login',
        text: 'me?',
        inReplyTo: `<b.${tag}@x>`,
        messageId: `<f.${tag}@x>`,
      },
    },
    { mail: { from: `Cecil <${c('cc')}>`, to: 'support@help.test', subject: 'Me too', text: 'same here', messageId: `<cc2.${tag}@x>` } },
    {
      mail: {
        from: c('eve'),
        to: 'support@help.test',
        subject: 'Reply to a tagged mail',
        text: `see [#${s.ticketId}-forged]`,
        inReplyTo: `<unknown.${tag}@elsewhere>`,
        messageId: `<e.${tag}@x>`,
      },
    },
  ];
}

/** Everything a user or operator can observe, with the database's own ids and the run's tag taken out. */
async function observe(app: TestApp, tag: string, ids: number[]) {
  const db = app.ctx.db;
  const strip = (v: unknown) => JSON.parse(JSON.stringify(v).replaceAll(tag, 'TAG'));
  const rows = await db
    .selectFrom('inbound_messages')
    .select(['id', 'status', 'reason', 'ticket_id', 'from_address', 'subject', 'header_message_id'])
    .where('id', 'in', ids)
    .orderBy('id')
    .execute();
  const ticketIds = [...new Set(rows.map((r) => r.ticket_id).filter((t): t is number => t !== null))];
  const tickets = await db
    .selectFrom('tickets as t')
    .innerJoin('users as u', 'u.id', 't.requester_id')
    .select(['t.id', 't.subject', 't.status', 'u.email', 'u.name', 'u.locale'])
    .where('t.id', 'in', ticketIds.length ? ticketIds : [0])
    .execute();
  const byId = new Map(tickets.map((t) => [t.id, t]));
  const perMessage = await Promise.all(
    rows.map(async (r) => {
      const t = r.ticket_id === null ? null : byId.get(r.ticket_id)!;
      const messages =
        r.ticket_id === null
          ? []
          : await db
              .selectFrom('messages')
              .select(['body_text', 'original_text', 'visibility'])
              .where('inbound_message_id', '=', r.id)
              .execute();
      const participants =
        r.ticket_id === null
          ? []
          : await db
              .selectFrom('ticket_participants as p')
              .innerJoin('users as u', 'u.id', 'p.user_id')
              .select(['u.email', 'p.role'])
              .where('p.ticket_id', '=', r.ticket_id)
              .orderBy('u.email')
              .execute();
      const outbox = await db
        .selectFrom('outbound_mails as o')
        .innerJoin('messages as m', 'm.id', 'o.ticket_message_id')
        .select(['o.kind', 'o.recipient', 'o.locale', 'o.payload'])
        .where('m.inbound_message_id', '=', r.id)
        .orderBy('o.kind')
        .orderBy('o.recipient')
        .execute();
      return {
        status: r.status,
        reason: r.reason,
        from: r.from_address,
        subject: r.subject,
        headerMessageId: r.header_message_id,
        ticket: t && { subject: t.subject, status: t.status, requester: t.email, name: t.name, locale: t.locale },
        messages,
        participants,
        outbox,
      };
    }),
  );
  const users = await db.selectFrom('users').select(['email', 'name', 'role', 'locale']).orderBy('email').execute();
  const ledger = await db.selectFrom('inbound_dedupe').select(['support_address', 'dedupe_key']).orderBy('dedupe_key').execute();
  return strip({ perMessage, users, ledger });
}

describe('inbound batch', () => {
  it('decides and writes exactly what message-by-message processing does, for every kind of message', async () => {
    const tag = uid();
    const [s1, s2] = await Promise.all([seed(seq, tag), seed(bat, tag)]);
    const ids1: number[] = [];
    for (const m of traffic(tag, s1)) ids1.push(await store(seq, m.mail, m.to));
    const ids2: number[] = [];
    for (const m of traffic(tag, s2)) ids2.push(await store(bat, m.mail, m.to));

    const countBefore = await processedCount(bat);
    const results1 = [];
    for (const id of ids1) results1.push(await processInboundMessage(seq.ctx, id));
    const results2 = await processInboundBatch(bat.ctx, ids2);

    const outcome = (r: { status: string; reason: string | null }) => `${r.status}:${r.reason ?? ''}`;
    expect(ids2.map((id) => outcome(results2.get(id)!))).toEqual(results1.map(outcome));
    // The mix really exercised both paths: plain first mails, and held / threaded / duplicate ones.
    expect(results1.map(outcome)).toEqual(
      expect.arrayContaining(['processed:', 'processed:duplicate', 'held:auto_reply', 'held:invalid_sender', 'held:not_participant']),
    );
    expect(await observe(bat, tag, ids2)).toEqual(await observe(seq, tag, ids1));
    // Every message of the batch was decided, and counted once.
    expect((await processedCount(bat)) - countBefore).toBe(ids2.length);
  });

  it('writes each message once when the same rows are batched twice at the same time', async () => {
    const tag = uid();
    const ids: number[] = [];
    for (let i = 0; i < 6; i++)
      ids.push(
        await store(bat, {
          from: `p${i}-${tag}@customer.example`,
          to: 'support@help.test',
          subject: `Parallel ${i}`,
          text: 'hello',
          messageId: `<p${i}.${tag}@x>`,
        }),
      );
    const [a, b] = await Promise.all([processInboundBatch(bat.ctx, ids), processInboundBatch(bat.ctx, [...ids].reverse())]);
    const statuses = ids.map((id) => [a.get(id)!.status, b.get(id)!.status].sort().join('/'));
    expect(statuses).toEqual(ids.map(() => 'processed/skipped'));
    const tickets = await bat.ctx.db.selectFrom('inbound_messages').select('ticket_id').where('id', 'in', ids).execute();
    expect(new Set(tickets.map((t) => t.ticket_id)).size).toBe(6);
    const acks = await bat.ctx.db
      .selectFrom('outbound_mails')
      .select('id')
      .where('kind', '=', 'acknowledgement')
      .where('recipient', 'like', `%-${tag}@customer.example`)
      .execute();
    expect(acks).toHaveLength(6);
  });

  it('falls back to one message at a time when the batch fails, so a failure stays with its own message', async () => {
    const tag = uid();
    const ids: number[] = [];
    for (let i = 0; i < 3; i++)
      ids.push(
        await store(bat, {
          from: `f${i}-${tag}@customer.example`,
          to: 'support@help.test',
          subject: `fallback ${i}`,
          text: 'x',
          messageId: `<f${i}.${tag}@x>`,
        }),
      );
    // The batch's transaction fails at commit; the per-message runs that follow succeed.
    const settled = await processInbound({ ...bat.ctx, db: failingTransactions(bat.ctx.db, 1) }, ids);
    expect(ids.map((id) => settled.get(id))).toEqual(
      ids.map(() => expect.objectContaining({ status: 'fulfilled', value: expect.objectContaining({ status: 'processed' }) })),
    );
    const rows = await bat.ctx.db.selectFrom('inbound_messages').select(['ticket_id', 'attempts']).where('id', 'in', ids).execute();
    expect(new Set(rows.map((r) => r.ticket_id)).size).toBe(3);
    // The rolled-back batch wrote nothing that survived: one ticket and one acknowledgement each.
    const acks = await bat.ctx.db
      .selectFrom('outbound_mails')
      .select('id')
      .where('kind', '=', 'acknowledgement')
      .where('recipient', 'like', `%-${tag}@customer.example`)
      .execute();
    expect(acks).toHaveLength(3);
  });

  it('isolates a poisoned message: its batch-mates commit, its attempt is counted, the job retries it alone', async () => {
    const tag = uid();
    const ids: number[] = [];
    for (let i = 0; i < 3; i++)
      ids.push(
        await store(bat, {
          from: `x${i}-${tag}@customer.example`,
          to: 'support@help.test',
          subject: `poison ${i}`,
          text: 'x',
          messageId: `<x${i}.${tag}@x>`,
        }),
      );
    // The batch fails, then the first message fails alone too; the other two must not wait for it.
    const poisoned = { ...bat.ctx, db: failingTransactions(bat.ctx.db, 2) };
    await expect(processInboundJob.handler(poisoned, { ids })).rejects.toBeInstanceOf(RetryLaterError);
    const rows = await bat.ctx.db
      .selectFrom('inbound_messages')
      .select(['id', 'status', 'attempts'])
      .where('id', 'in', ids)
      .orderBy('id')
      .execute();
    expect(rows.map((r) => [r.status, r.attempts])).toEqual([
      ['received', 1],
      ['processed', 0],
      ['processed', 0],
    ]);
    // BullMQ's retry of the same job: only the poisoned row is left to do.
    await expect(processInboundJob.handler(bat.ctx, { ids })).resolves.toEqual({ processed: 1, skipped: 2 });
  });

  it('holds a message that keeps failing instead of retrying it forever', async () => {
    const tag = uid();
    const id = await store(bat, { from: `y-${tag}@customer.example`, to: 'support@help.test', subject: 'always fails', text: 'x' });
    const failing = { ...bat.ctx, db: failingTransactions(bat.ctx.db, 1_000) };
    for (let attempt = 1; attempt < MAX_PROCESSING_ATTEMPTS; attempt++)
      await expect(processInboundJob.handler(failing, { ids: [id] })).rejects.toBeInstanceOf(RetryLaterError);
    // The last attempt holds it (in a transaction of its own, which this proxy would fail too: use the real one).
    const real = { ...bat.ctx, db: failingTransactions(bat.ctx.db, 1) };
    await expect(processInboundJob.handler(real, { ids: [id] })).resolves.toEqual({ held: 1 });
    const row = await bat.ctx.db
      .selectFrom('inbound_messages')
      .select(['status', 'reason', 'attempts'])
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ status: 'held', reason: 'processing_error', attempts: MAX_PROCESSING_ATTEMPTS });
  });
});

async function processedCount(app: TestApp): Promise<number> {
  const m = await app.ctx.metrics.inboundProcessed.get();
  return m.values.find((v) => v.labels.path === 'rules')?.value ?? 0;
}
