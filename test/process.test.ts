import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import { inject } from 'vitest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../src/db/database.js';
import { createTestDatabase, testQueuePrefix } from './support/env.js';
import { spawnReplyline } from './support/process.js';
import { freePort } from './support/net.js';

function readBanner(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = new Socket();
    s.once('data', (d) => {
      resolve(d.toString());
      s.destroy();
    });
    s.once('error', reject);
    s.connect(port, '127.0.0.1');
  });
}

describe('replyline as a process', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let baseEnv: Record<string, string>;
  beforeAll(async () => {
    database = await createTestDatabase();
    baseEnv = {
      DATABASE_URL: database.url,
      REDIS_URL: inject('redisUrl'),
      QUEUE_PREFIX: testQueuePrefix(),
      SMTP_LISTEN: '127.0.0.1:0',
      HTTP_LISTEN: '127.0.0.1:0',
      SUPPORT_ADDRESSES: 'support@help.test',
    };
  });
  afterAll(() => database.drop());

  it('starts with every role: SMTP answers 220 and /healthz 200, then SIGTERM exits 0', async () => {
    const proc = await spawnReplyline(baseEnv);
    try {
      expect(await readBanner(proc.smtpPort!)).toMatch(/^220 /);
      const res = await fetch(`http://127.0.0.1:${proc.httpPort}/healthz`);
      expect(res.status).toBe(200);
      expect(proc.logs().some((l) => l.msg?.toString().startsWith('SECRET_KEY is not set'))).toBe(true);
    } finally {
      proc.child.kill('SIGTERM');
    }
    expect(await proc.exited).toBe(0);
  });

  it('refuses to start with a clear message when Redis may evict keys', async () => {
    const port = await freePort();
    const redis = spawn('redis-server', [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--maxmemory-policy',
      'allkeys-lru',
    ]);
    const spawnError = new Promise<Error>((r) => redis.once('error', r));
    try {
      // Wait for the throwaway Redis to accept connections.
      for (let i = 0; i < 50; i++) {
        const up = await new Promise<boolean>((r) => {
          const s = new Socket();
          s.once('connect', () => (s.destroy(), r(true)));
          s.once('error', () => r(false));
          s.connect(port, '127.0.0.1');
        });
        if (up) break;
        const failed = await Promise.race([spawnError, sleep(100).then(() => null)]);
        if (failed) throw new Error(`this test needs redis-server on PATH: ${failed.message}`);
      }
      const proc = await spawnReplyline({ ...baseEnv, REDIS_URL: `redis://127.0.0.1:${port}` }, { expectStart: false });
      expect(await proc.exited).toBe(1);
      expect(proc.stderr()).toMatch(/refusing to start: REDIS_EVICTION_POLICY: Redis maxmemory-policy is "allkeys-lru"/);
    } finally {
      redis.kill('SIGKILL');
    }
  });

  it('refuses to start and lists every configuration problem at once', async () => {
    const proc = await spawnReplyline({ ...baseEnv, REGISTRATION: 'sometimes', SMTP_LISTEN: 'nowhere' }, { expectStart: false });
    expect(await proc.exited).toBe(1);
    expect(proc.stderr()).toMatch(/REGISTRATION/);
    expect(proc.stderr()).toMatch(/SMTP_LISTEN/);
  });

  it('on SIGTERM finishes an SMTP transaction already in DATA, refuses new connections, and exits 0', async () => {
    const proc = await spawnReplyline({ ...baseEnv, REPLYLINE_ROLES: 'smtp' });
    const conn = new SMTPConnection({ port: proc.smtpPort!, host: '127.0.0.1', ignoreTLS: true });
    await new Promise<void>((resolve, reject) => {
      conn.once('error', reject);
      conn.connect(() => resolve());
    });
    const body = new PassThrough();
    const sent = new Promise<{ response?: string }>((resolve, reject) =>
      conn.send({ from: 'sender@example.com', to: ['support@help.test'] }, body, (err, info) => (err ? reject(err) : resolve(info))),
    );
    // nodemailer starts reading the body only after the server's 354: once it flows, the server is inside DATA.
    const inData = once(body, 'resume');
    body.write('From: sender@example.com\r\nTo: support@help.test\r\nSubject: in flight\r\n\r\nfirst half\r\n');
    await inData;
    proc.child.kill('SIGTERM');
    // The listener closes: new connections are refused (polled, bounded), while our DATA stays open.
    // A connection that races the close can be reset instead; that is the closing, not yet the closed, state.
    const deadline = Date.now() + 10_000;
    let refused = '';
    while (!/ECONNREFUSED/.test(refused) && Date.now() < deadline) {
      refused = await readBanner(proc.smtpPort!).then(
        () => '',
        (err: unknown) => String(err),
      );
      if (!/ECONNREFUSED/.test(refused)) await sleep(50);
    }
    expect(refused).toMatch(/ECONNREFUSED/);
    body.end('second half\r\n');
    const info = await sent;
    expect(info.response).toMatch(/^250 /);
    conn.quit();
    expect(await proc.exited).toBe(0);

    const db = createDb(database.url, 1);
    const rows = await db.selectFrom('inbound_messages').select(['raw']).execute();
    await db.destroy();
    expect(rows.some((r) => r.raw.toString().includes('second half'))).toBe(true);
  });
});

describe('first start on a stock PostgreSQL', () => {
  it('creates the configured database when it does not exist, then its schema', async () => {
    const server = new URL(inject('pgServerUrl'));
    const name = `${inject('templateDb')}_fresh`;
    server.pathname = `/${name}`;
    const proc = await spawnReplyline({
      DATABASE_URL: server.toString(),
      REDIS_URL: inject('redisUrl'),
      QUEUE_PREFIX: testQueuePrefix(),
      REPLYLINE_ROLES: 'portal',
      HTTP_LISTEN: '127.0.0.1:0',
    });
    try {
      expect((await fetch(`http://127.0.0.1:${proc.httpPort}/healthz`)).status).toBe(200);
      const db = createDb(server.toString(), 1);
      const n = await db
        .selectFrom('users')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow();
      await db.destroy();
      expect(Number(n.n)).toBe(0);
    } finally {
      proc.child.kill('SIGTERM');
      await proc.exited;
      // global teardown drops every database with the run's prefix, this one included
    }
  });
});
