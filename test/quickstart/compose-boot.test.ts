import { readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { startRelaySink, to, type RelaySink } from '../outbound/support/relay-sink.js';
import { sendOnce } from '../inbound/support/smtp.js';
import { createTestDatabase, testQueuePrefix } from '../support/env.js';
import { spawnReplyline } from '../support/process.js';

/**
 * `docker compose up` must start replyline. CI only runs `docker compose config -q`,
 * which checks the YAML, not whether replyline accepts the environment it gets.
 * This boots replyline (as its own process, as the image does) with exactly the
 * replyline service's environment from docker-compose.yml — interpolated as for a
 * newcomer's empty shell — with only the PostgreSQL, Redis and Mailpit hosts
 * swapped for the local ones.
 */

/** Compose interpolation of `${VAR:-default}` / `${VAR-default}` / `${VAR}` for a shell that sets none of them. */
function interpolate(value: string): string {
  return value.replace(/\$\{(\w+)(?::?-([^}]*))?\}/g, (_, _name: string, fallback?: string) => fallback ?? '');
}

function composeEnvironment(): Record<string, string> {
  const compose = parseYaml(readFileSync(new URL('../../docker-compose.yml', import.meta.url), 'utf8')) as {
    services: Record<string, { environment?: Record<string, string> | string[] }>;
  };
  const raw = compose.services.replyline?.environment;
  if (!raw) throw new Error('docker-compose.yml has no replyline service environment');
  const entries = Array.isArray(raw) ? raw.map((e) => e.split(/=(.*)/s, 2) as [string, string]) : Object.entries(raw);
  return Object.fromEntries(entries.map(([k, v]) => [k, interpolate(String(v ?? ''))]));
}

/** The local service's URL in place of the compose one (same scheme): user, password, host, port and database. */
function swapHost(url: string, local: string): string {
  const from = new URL(url);
  const target = new URL(local);
  if (from.protocol !== target.protocol) throw new Error(`compose uses ${from.protocol}, the local service is ${target.protocol}`);
  return target.toString();
}

function banner(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = new Socket();
    s.once('data', (d) => (resolve(d.toString()), s.destroy()));
    s.once('error', reject);
    s.connect(port, '127.0.0.1');
  });
}

describe('the Docker image', () => {
  it('starts node exactly as npm start does (the heap cap included)', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { scripts: { start: string } };
    const cmd = /^CMD (\[.*\])$/m.exec(readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8'))?.[1];
    expect(JSON.parse(cmd ?? '[]')).toEqual(pkg.scripts.start.split(' '));
    expect(pkg.scripts.start).toMatch(/--max-old-space-size=\d+/);
  });
});

describe('docker-compose.yml quick start', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let sink: RelaySink;
  beforeAll(async () => {
    database = await createTestDatabase({ empty: true });
    sink = await startRelaySink();
  });
  afterAll(async () => {
    await sink?.stop();
    await database?.drop();
  });

  it('starts replyline with the compose environment: SMTP 220, /healthz 200, and support@localhost gets mail', async () => {
    const compose = composeEnvironment();
    // What the file itself promises a newcomer: the defaults of the quick start.
    expect(compose.SUPPORT_ADDRESSES).toBe('support@localhost');
    const env: Record<string, string> = {
      ...compose,
      DATABASE_URL: swapHost(compose.DATABASE_URL!, database.url),
      REDIS_URL: swapHost(compose.REDIS_URL!, inject('redisUrl')),
      OUTBOUND_SMTP_URL: swapHost(compose.OUTBOUND_SMTP_URL!, sink.url),
      // Test isolation only: the container listens on fixed ports, this machine is shared.
      QUEUE_PREFIX: testQueuePrefix(),
      SMTP_LISTEN: '127.0.0.1:0',
      HTTP_LISTEN: '127.0.0.1:0',
    };
    // Nothing from the test runner's own environment may fill in for what compose leaves unset.
    const unset = Object.fromEntries(
      ['SECRET_KEY', 'MAIL_FROM', 'STAFF_AUTH', 'DNS_SERVERS'].filter((k) => !(k in env)).map((k) => [k, '']),
    );
    const proc = await spawnReplyline({ ...unset, ...env });
    try {
      expect(await banner(proc.smtpPort!)).toMatch(/^220 /);
      expect((await fetch(`http://127.0.0.1:${proc.httpPort}/healthz`)).status).toBe(200);
      const reply = await sendOnce(
        proc.smtpPort!,
        { from: 'newcomer@customer.test', to: ['support@localhost'] },
        'From: newcomer@customer.test\r\nTo: support@localhost\r\nSubject: hello\r\nMessage-ID: <compose-boot@customer.test>\r\n\r\nFirst mail.\r\n',
      );
      expect(reply).toMatch(/^250 /);
      // The acknowledgement reaching the relay proves outbound mail works with these settings too
      // (a dotless MAIL_FROM used to fail every send). The process log says why if it does not.
      await sink.waitFor(to('newcomer@customer.test'), 1, 20_000).catch((err: Error) => {
        throw new Error(`${err.message}; replyline logged: ${JSON.stringify(proc.logs().filter((l) => Number(l.level) >= 40))}`);
      });
    } finally {
      proc.child.kill('SIGTERM');
    }
    expect(await proc.exited).toBe(0);
  });
});
