import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { loadConfig, type Config } from '../../src/config.js';

/**
 * A database of this test file's own, cloned from the run's migrated template,
 * or empty (`{ empty: true }`) for tests of the migrations themselves.
 */
export async function createTestDatabase(opts: { empty?: boolean } = {}): Promise<{ url: string; drop(): Promise<void> }> {
  const server = inject('pgServerUrl');
  const name = `${inject('templateDb')}_${opts.empty ? 'empty_' : ''}${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: server });
  await admin.connect();
  // CREATE DATABASE … TEMPLATE fails if anyone is connected to the template; retry briefly.
  for (let attempt = 0; ; attempt++) {
    try {
      await admin.query(opts.empty ? `CREATE DATABASE ${name}` : `CREATE DATABASE ${name} TEMPLATE ${inject('templateDb')}`);
      break;
    } catch (err) {
      if (attempt > 20) throw err;
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
    }
  }
  await admin.end();
  const url = new URL(server);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: server });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** A unique BullMQ prefix so test files never see each other's jobs. */
export function testQueuePrefix(): string {
  return `${inject('runPrefix')}_${randomBytes(4).toString('hex')}`;
}

/**
 * Every inbound message is checked with SPF/DKIM/DMARC. Tests never ask the
 * machine's resolver (it throttles bursts, and it is not ours): lookups go to
 * a closed local port and fail at once, so senders are unauthenticated unless
 * a test serves its own zone (test/outbound/support/dns-server.ts).
 */
export const NO_DNS = '127.0.0.1:9';

/** Config for tests: ephemeral ports, silent logs, a real secret, no outside DNS; overrides win. */
export function testConfig(databaseUrl: string, overrides: Record<string, string> = {}): Config {
  return loadConfig({
    NODE_ENV: 'test',
    DATABASE_URL: databaseUrl,
    REDIS_URL: inject('redisUrl'),
    QUEUE_PREFIX: testQueuePrefix(),
    SMTP_LISTEN: '127.0.0.1:0',
    HTTP_LISTEN: '127.0.0.1:0',
    PUBLIC_URL: 'http://127.0.0.1:3000',
    SUPPORT_ADDRESSES: 'support@help.test',
    MAIL_DOMAIN: 'help.test',
    SECRET_KEY: 'test-secret-key-0123456789abcdef0123456789',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    DNS_SERVERS: NO_DNS,
    INBOUND_SWEEP_GRACE_MS: '1000',
    ...overrides,
  });
}
