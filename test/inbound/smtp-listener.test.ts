import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeContext, createContext, loadInstallation, type AppContext } from '../../src/context.js';
import { startSmtpListener, type SmtpListener } from '../../src/inbound/smtp-listener.js';
import { startWorkers } from '../../src/jobs/worker.js';
import { makeReplyAddress } from '../../src/mail/tokens.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { testConfig } from '../support/env.js';
import { buildMail, queuedId, rawDialogue, sendOnce, SmtpClient, uid, waitProcessed } from './support/smtp.js';

const SECRET = 'test-secret-key-0123456789abcdef0123456789';
let app: TestApp;

beforeAll(async () => {
  // Only the SMTP role: these tests are about the accept path, not processing.
  app = await startTestApp({ REPLYLINE_ROLES: 'smtp', SMTP_MAX_SIZE: String(64 * 1024), SMTP_MAX_RECIPIENTS: '3' });
});
afterAll(() => app.teardown());

/** A second listener on the same database/queues with other limits. */
async function listenerWith(overrides: Record<string, string>): Promise<{ listener: SmtpListener; ctx: AppContext }> {
  const ctx: AppContext = { ...app.ctx, config: testConfig(app.databaseUrl, { REPLYLINE_ROLES: 'smtp', ...overrides }) };
  return { listener: await startSmtpListener(ctx), ctx };
}

function smtpCode(err: unknown): string {
  const e = err as { responseCode?: number; response?: string };
  return `${e.responseCode} ${e.response ?? ''}`;
}

describe('accept path', () => {
  it('answers 250 only with the exact raw bytes and the envelope committed in inbound_messages', async () => {
    const from = `sender-${uid()}@customer.example`;
    const raw = await buildMail({
      from,
      to: 'support@help.test',
      subject: 'Durability',
      text: 'line one\r\n.line starting with a dot\r\n',
    });
    const response = await sendOnce(app.smtp!.port, { from, to: ['support@help.test'] }, raw);
    expect(response).toMatch(/^250 2\.0\.0 Ok: queued as \d+/);
    const row = await app.ctx.db.selectFrom('inbound_messages').selectAll().where('id', '=', queuedId(response)).executeTakeFirstOrThrow();
    expect(Buffer.compare(row.raw, raw)).toBe(0);
    expect(row.mail_from).toBe(from);
    expect(row.rcpt_to).toEqual(['support@help.test']);
    expect(row.client_address).toMatch(/127\.0\.0\.1/);
    expect(row.helo).not.toBe('');
    expect(row.status).toBe('received');
  });

  it('accepts a validly signed reply address and rejects unknown or forged recipients with 550 5.1.1', async () => {
    const reply = makeReplyAddress(SECRET, 'support', 'help.test', { ticketId: 1, userId: 1 });
    const raw = await buildMail({ from: 'a@customer.example', to: reply, subject: 'x', text: 'x' });
    await expect(sendOnce(app.smtp!.port, { from: 'a@customer.example', to: [reply] }, raw)).resolves.toMatch(/^250/);
    for (const bad of ['sales@help.test', 'support@other.example', reply.replace(/\.[a-z2-7]{16}@/, '.aaaaaaaaaaaaaaaa@')]) {
      const err = await sendOnce(app.smtp!.port, { from: 'a@customer.example', to: [bad] }, raw).catch((e: unknown) => e);
      expect(smtpCode(err)).toMatch(/^550 550 5\.1\.1/);
    }
  });

  it('caps recipients per message with 452 4.5.3', async () => {
    const c = await SmtpClient.connect(app.smtp!.port);
    try {
      const to = Array.from({ length: 4 }, (_, i) => makeReplyAddress(SECRET, 'support', 'help.test', { ticketId: 10 + i, userId: 1 }));
      // nodemailer reports the rejected recipient but still delivers to the accepted ones.
      const raw = await buildMail({ from: 'a@customer.example', to, subject: 'many', text: 'x' });
      const info = await new Promise<{ rejectedErrors?: Array<{ response: string }>; accepted: string[] }>((resolve, reject) =>
        c.conn.send({ from: 'a@customer.example', to }, raw, (err, i) => (err ? reject(err) : resolve(i as never))),
      );
      expect(info.accepted).toHaveLength(3);
      expect(info.rejectedErrors?.[0]?.response).toMatch(/^452 4\.5\.3/);
    } finally {
      c.close();
    }
  });

  it("advertises SIZE and refuses a declared oversize at MAIL FROM with 552 (smtp-server's own reply)", async () => {
    const replies = await rawDialogue(app.smtp!.port, ['EHLO client.example', 'MAIL FROM:<a@customer.example> SIZE=999999999']);
    expect(replies[1]).toMatch(/^250[- ]SIZE 65536\r?$/m);
    expect(replies[2]).toMatch(/^552 .*maximum message size/);
  });

  it('refuses a message that exceeds SIZE during DATA with 552 5.3.4 and stores nothing', async () => {
    const before = await app.ctx.db
      .selectFrom('inbound_messages')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .executeTakeFirstOrThrow();
    const big = `Subject: big\r\nFrom: a@customer.example\r\n\r\n${'x'.repeat(998)}\r\n`.repeat(80);
    const err = await sendOnce(app.smtp!.port, { from: 'a@customer.example', to: ['support@help.test'] }, big).catch((e: unknown) => e);
    expect(smtpCode(err)).toMatch(/^552 552 5\.3\.4/);
    const after = await app.ctx.db
      .selectFrom('inbound_messages')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .executeTakeFirstOrThrow();
    expect(after.n).toBe(before.n);
  });
});

describe('rate limits (per client IP, in memory)', () => {
  it('answers 421 once the per-IP connection rate is exceeded', async () => {
    const { listener } = await listenerWith({ SMTP_CONN_PER_IP_PER_MIN: '2' });
    try {
      (await SmtpClient.connect(listener.port)).close();
      (await SmtpClient.connect(listener.port)).close();
      const err = await SmtpClient.connect(listener.port).catch((e: unknown) => e);
      expect(smtpCode(err)).toMatch(/^421 .*4\.7\.0/);
    } finally {
      await listener.close();
    }
  });

  it('answers 451 4.7.1 once the per-IP message rate is exceeded', async () => {
    const { listener } = await listenerWith({ SMTP_MSG_PER_IP_PER_MIN: '2' });
    const c = await SmtpClient.connect(listener.port);
    try {
      const raw = 'From: a@customer.example\r\nSubject: r\r\n\r\nx\r\n';
      await c.send({ from: 'a@customer.example', to: ['support@help.test'] }, raw);
      await c.send({ from: 'a@customer.example', to: ['support@help.test'] }, raw);
      const err = await c.send({ from: 'a@customer.example', to: ['support@help.test'] }, raw).catch((e: unknown) => e);
      expect(smtpCode(err)).toMatch(/^451 .*4\.7\.1/);
    } finally {
      c.close();
      await listener.close();
    }
  });
});

describe('durability when a dependency is down', () => {
  it('answers 451 4.3.0, never 250, when PostgreSQL is unreachable', async () => {
    const config = testConfig('postgres://postgres@127.0.0.1:1/none', { REPLYLINE_ROLES: 'smtp' });
    const ctx = createContext(config);
    const listener = await startSmtpListener(ctx);
    try {
      const err = await sendOnce(listener.port, { from: 'a@customer.example', to: ['support@help.test'] }, 'Subject: x\r\n\r\nx').catch(
        (e: unknown) => e,
      );
      expect(smtpCode(err)).toMatch(/^451 451 4\.3\.0/);
    } finally {
      await listener.close();
      await closeContext(ctx);
    }
  });

  it('still answers 250 and stores the message while Redis is down; the sweeper enqueues it later', async () => {
    const config = testConfig(app.databaseUrl, { REPLYLINE_ROLES: 'smtp', REDIS_URL: 'redis://127.0.0.1:1' });
    const ctx = createContext(config);
    await loadInstallation(ctx);
    const listener = await startSmtpListener(ctx);
    try {
      const response = await sendOnce(
        listener.port,
        { from: 'a@customer.example', to: ['support@help.test'] },
        'From: a@customer.example\r\nSubject: redis down\r\n\r\nx\r\n',
      );
      expect(response).toMatch(/^250/);
      const id = queuedId(response);
      const row = await app.ctx.db
        .selectFrom('inbound_messages')
        .select(['status', 'subject'])
        .where('id', '=', id)
        .executeTakeFirstOrThrow();
      expect(row.status).toBe('received');

      // Redis is back: a worker's sweeper (not the accept path, which never got to enqueue) picks the row up.
      const workerCtx = createContext(
        testConfig(app.databaseUrl, { REPLYLINE_ROLES: 'worker', SWEEP_INTERVAL_MS: '200', INBOUND_SWEEP_GRACE_MS: '1000' }),
      );
      await loadInstallation(workerCtx);
      const workers = startWorkers(workerCtx);
      try {
        const processed = await waitProcessed(app.ctx.db, id, 20_000);
        expect(processed.status).not.toBe('received');
        expect(processed.ticket_id).not.toBeNull();
      } finally {
        await workers.close();
        await closeContext(workerCtx);
      }
    } finally {
      await listener.close();
      await closeContext(ctx);
    }
  });
});

describe('STARTTLS', () => {
  it('offers STARTTLS when a certificate is configured and records TLS on the row', async () => {
    const dir = new URL('./fixtures/', import.meta.url);
    const { listener } = await listenerWith({
      SMTP_TLS_KEY: new URL('tls-key.pem', dir).pathname,
      SMTP_TLS_CERT: readFileSync(new URL('tls-cert.pem', dir), 'utf8'),
    });
    try {
      const c = await SmtpClient.connect(listener.port, { ignoreTLS: false, requireTLS: true, tls: { rejectUnauthorized: false } });
      const response = await c.send(
        { from: 'a@customer.example', to: ['support@help.test'] },
        'From: a@customer.example\r\nSubject: tls\r\n\r\nx\r\n',
      );
      c.close();
      const row = await app.ctx.db
        .selectFrom('inbound_messages')
        .select('tls')
        .where('id', '=', queuedId(response))
        .executeTakeFirstOrThrow();
      expect(row.tls).toBe(true);
    } finally {
      await listener.close();
    }
  });

  it('does not offer STARTTLS without a certificate', async () => {
    const c = await SmtpClient.connect(app.smtp!.port);
    try {
      expect((c.conn as unknown as { _supportedExtensions: string[] })._supportedExtensions).not.toContain('STARTTLS');
    } finally {
      c.close();
    }
  });
});
