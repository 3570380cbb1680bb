import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/run.js';
import { ConfigError, loadConfig, type Config } from '../src/config.js';
import { startDnsServer, type TestDnsServer } from './outbound/support/dns-server.js';
import { makeDkimKey } from './outbound/support/staff-mail.js';
import { startRelaySink, type RelaySink } from './outbound/support/relay-sink.js';
import { startPortalApp, type PortalTestApp } from './portal/support.js';
import { createTestDatabase, testConfig } from './support/env.js';
import { freePort } from './support/net.js';

/**
 * `doctor` against real parts: PostgreSQL, Redis, a relay, a running portal
 * and a DNS server serving the support domain's records. One line per check;
 * exit 1 exactly when something would stop mail flowing.
 */
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let sink: RelaySink;
let dns: TestDnsServer;
let portal: PortalTestApp;

beforeAll(async () => {
  database = await createTestDatabase();
  sink = await startRelaySink();
  portal = await startPortalApp();
  dns = await startDnsServer({
    'help.test': { TXT: ['v=spf1 ip4:192.0.2.10 -all'], MX: [{ preference: 10, exchange: 'mx.help.test' }] },
    '_dmarc.help.test': { TXT: ['v=DMARC1; p=reject'] },
    'k1._domainkey.help.test': { TXT: [makeDkimKey().txt] },
    // A domain that exists but publishes nothing.
    'bare.test': { A: ['192.0.2.1'] },
  });
});
afterAll(async () => {
  await portal?.teardown();
  await Promise.all([sink?.stop(), dns?.stop()]);
  await database?.drop();
});

async function doctor(config: Config | ConfigError, ...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(['doctor', ...args], config, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, lines: out, err };
}

const healthy = (overrides: Record<string, string> = {}) =>
  testConfig(database.url, { OUTBOUND_SMTP_URL: sink.url, PUBLIC_URL: portal.base, DNS_SERVERS: dns.server, ...overrides });
const line = (lines: string[], name: string) => lines.find((l) => l.slice(6).startsWith(`${name}:`)) ?? `(no ${name} line)`;

describe('doctor', () => {
  it('passes a healthy installation: every check on its own line, all ok, exit 0', async () => {
    const r = await doctor(healthy());
    expect(r.code).toBe(0);
    for (const name of [
      'config',
      'postgresql',
      'redis',
      'relay',
      'portal',
      'dns',
      'spf help.test',
      'dmarc help.test',
      'dkim help.test',
      'mx help.test',
    ]) {
      expect(line(r.lines, name)).toMatch(/^ok {4}/);
    }
    expect(line(r.lines, 'redis')).toContain('noeviction');
    expect(line(r.lines, 'dkim help.test')).toContain('selector "k1"');
    expect(line(r.lines, 'mx help.test')).toContain('10 mx.help.test');
    expect(r.lines.at(-1)).toBe('mail can flow.');
    expect(r.err).toEqual([`database: ${new URL(database.url).pathname.slice(1)} on ${new URL(database.url).host}`]);
  });

  it('fails (exit 1) when Redis or the relay is unreachable, each with a fix; missing DNS records are warnings with fixes', async () => {
    const closed = await freePort();
    const r = await doctor(
      healthy({
        REDIS_URL: `redis://127.0.0.1:${closed}`,
        OUTBOUND_SMTP_URL: `smtp://127.0.0.1:${closed}`,
        SUPPORT_ADDRESSES: 'support@bare.test',
      }),
    );
    expect(r.code).toBe(1);
    expect(line(r.lines, 'redis')).toMatch(/^FAIL .*cannot reach .* — fix: start Redis or correct REDIS_URL$/);
    expect(line(r.lines, 'relay')).toMatch(
      /^FAIL .*ECONNREFUSED.* — fix: start the relay \(Mailpit for a trial\) or correct OUTBOUND_SMTP_URL$/,
    );
    expect(line(r.lines, 'postgresql')).toMatch(/^ok/);
    expect(line(r.lines, 'spf bare.test')).toMatch(/^warn .*no SPF record — fix: publish "v=spf1 … -all" for bare.test.*STAFF_AUTH=token/);
    expect(line(r.lines, 'dmarc bare.test')).toMatch(/^warn .*_dmarc\.bare\.test/);
    expect(line(r.lines, 'dkim bare.test')).toMatch(/^warn .*--dkim-selector/);
    expect(line(r.lines, 'mx bare.test')).toMatch(/^warn .*no MX record/);
    expect(r.lines.at(-1)).toBe('2 problem(s) stop mail from flowing; fix the FAIL lines above.');
  });

  it('checks AUTH when OUTBOUND_SMTP_URL has credentials: accepted is ok, refused fails with a fix', async () => {
    const relay = new SMTPServer({
      allowInsecureAuth: true,
      disabledCommands: ['STARTTLS'],
      authMethods: ['PLAIN', 'LOGIN'],
      onAuth: (auth, _session, cb) =>
        auth.username === 'mailer' && auth.password === 'right' ? cb(null, { user: 'mailer' }) : cb(new Error('5.7.8 bad credentials')),
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const port = (relay.server.address() as { port: number }).port;
    try {
      const ok = await doctor(healthy({ OUTBOUND_SMTP_URL: `smtp://mailer:right@127.0.0.1:${port}` }));
      expect(line(ok.lines, 'relay')).toBe(`ok    relay: 127.0.0.1:${port} answered EHLO and accepted AUTH`);
      const bad = await doctor(healthy({ OUTBOUND_SMTP_URL: `smtp://mailer:wrong@127.0.0.1:${port}` }));
      expect(bad.code).toBe(1);
      expect(line(bad.lines, 'relay')).toMatch(/^FAIL .* — fix: correct the user and password in OUTBOUND_SMTP_URL$/);
    } finally {
      await new Promise<void>((resolve) => relay.close(() => resolve()));
    }
  });

  it('finds a DKIM key under a selector given with --dkim-selector', async () => {
    dns.zone['custom2026._domainkey.bare.test'] = { TXT: [makeDkimKey().txt] };
    const r = await doctor(healthy({ SUPPORT_ADDRESSES: 'support@bare.test' }), '--dkim-selector', 'custom2026');
    expect(line(r.lines, 'dkim bare.test')).toMatch(/^ok .*selector "custom2026"/);
  });

  it('fails on resolvers that do not answer under STAFF_AUTH=dmarc, and only warns under token', async () => {
    const silent = `127.0.0.1:${await freePort()}`;
    const dmarc = await doctor(healthy({ DNS_SERVERS: silent }));
    expect(dmarc.code).toBe(1);
    expect(line(dmarc.lines, 'dns')).toMatch(/^FAIL .*did not answer.* — fix: set DNS_SERVERS=host:port/);
    const token = await doctor(healthy({ DNS_SERVERS: silent, STAFF_AUTH: 'token' }));
    expect(token.code).toBe(0);
    expect(line(token.lines, 'dns')).toMatch(/^warn/);
  });

  it('reports a database that is not migrated yet without migrating it', async () => {
    const empty = await createTestDatabase({ empty: true });
    try {
      for (let i = 0; i < 2; i++) {
        const r = await doctor(healthy({ DATABASE_URL: empty.url }));
        expect(line(r.lines, 'postgresql')).toMatch(
          /^warn .*migration\(s\) not applied yet .*0001-initial.* — fix: they are applied at every start/,
        );
        expect(r.code).toBe(0);
      }
    } finally {
      await empty.drop();
    }
  });

  it('reports an invalid configuration as a failed check', async () => {
    let config: ConfigError | undefined;
    try {
      loadConfig({ REGISTRATION: 'sometimes', SUPPORT_ADDRESSES: 'nope' });
    } catch (err) {
      config = err as ConfigError;
    }
    const r = await doctor(config!);
    expect(r.code).toBe(1);
    expect(r.lines).toEqual([
      expect.stringMatching(
        /^FAIL {2}config: (?=.*REGISTRATION)(?=.*SUPPORT_ADDRESSES: "nope" is not an email address).* — fix: correct these environment variables/,
      ),
    ]);
  });
});
