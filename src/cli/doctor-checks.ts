import { Resolver } from 'node:dns/promises';
import { Migrator } from 'kysely';
import nodemailer from 'nodemailer';
import pg from 'pg';
import { migrations } from '../../migrations/index.js';
import type { Config } from '../config.js';
import { createDb } from '../db/database.js';
import { domainOf } from '../core/address.js';
import { createProducerRedis, waitForReady } from '../redis.js';

/**
 * The checks of `doctor`, one result each. `fail` means mail would not flow
 * (doctor exits 1); `warn` means something a newcomer should know, such as
 * DNS records staff replies need under STAFF_AUTH=dmarc.
 */
export interface CheckResult {
  level: 'ok' | 'warn' | 'fail';
  name: string;
  detail: string;
  /** What to do about a warn or fail. */
  fix?: string;
}

const TIMEOUT_MS = 5_000;
const message = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0]!;

export async function checkPostgres(config: Config): Promise<CheckResult> {
  const name = 'postgresql';
  const where = `${new URL(config.DATABASE_URL).host}`;
  const probe = new pg.Client({ connectionString: config.DATABASE_URL, connectionTimeoutMillis: TIMEOUT_MS });
  try {
    await probe.connect();
  } catch (err) {
    if ((err as { code?: string }).code === '3D000') {
      return {
        level: 'warn',
        name,
        detail: `reachable at ${where}, but the database does not exist yet`,
        fix: 'it is created at the first start (npm start); the role needs CREATEDB, or run createdb once',
      };
    }
    return { level: 'fail', name, detail: `cannot connect to ${where}: ${message(err)}`, fix: 'start PostgreSQL or correct DATABASE_URL' };
  } finally {
    await probe.end().catch(() => {});
  }
  const db = createDb(config.DATABASE_URL, 1);
  try {
    const known = await new Migrator({ db, provider: { getMigrations: async () => migrations } }).getMigrations();
    const pending = known.filter((m) => !m.executedAt).map((m) => m.name);
    if (pending.length) {
      return {
        level: 'warn',
        name,
        detail: `reachable at ${where}; ${pending.length} migration(s) not applied yet (${pending.join(', ')})`,
        fix: 'they are applied at every start, or run: npm run cli -- migrate',
      };
    }
    return { level: 'ok', name, detail: `reachable at ${where}, schema up to date (${known.length} migrations)` };
  } catch (err) {
    return {
      level: 'fail',
      name,
      detail: `reachable at ${where}, but reading the schema failed: ${message(err)}`,
      fix: "check the role's privileges on the database",
    };
  } finally {
    await db.destroy();
  }
}

export async function checkRedis(config: Config): Promise<CheckResult> {
  const name = 'redis';
  const where = new URL(config.REDIS_URL).host;
  const redis = createProducerRedis(config.REDIS_URL, { connectTimeout: TIMEOUT_MS, retryStrategy: () => null });
  try {
    // With retries off, a refused connection ends the client at once: no need to sit out the timeout.
    const ended = new Promise<never>((_, reject) => redis.once('end', () => reject(new Error('connection refused or closed'))));
    ended.catch(() => {}); // disconnect() below ends it too, after the race is decided
    await Promise.race([waitForReady(redis, TIMEOUT_MS), ended]);
    const policy = /^maxmemory_policy:(\S+)/m.exec(await redis.info('memory'))?.[1] ?? 'unknown';
    if (policy !== 'noeviction') {
      return {
        level: 'fail',
        name,
        detail: `reachable at ${where}, but maxmemory-policy is "${policy}" (jobs could be evicted; replyline refuses to start)`,
        fix: 'redis-cli CONFIG SET maxmemory-policy noeviction, and set it in redis.conf',
      };
    }
    return { level: 'ok', name, detail: `reachable at ${where}, maxmemory-policy noeviction` };
  } catch (err) {
    return { level: 'fail', name, detail: `cannot reach ${where}: ${message(err)}`, fix: 'start Redis or correct REDIS_URL' };
  } finally {
    redis.disconnect();
  }
}

export async function checkRelay(config: Config): Promise<CheckResult> {
  const name = 'relay';
  const url = new URL(config.OUTBOUND_SMTP_URL);
  const auth = url.username ? ' and accepted AUTH' : '';
  const transport = nodemailer.createTransport({
    url: config.OUTBOUND_SMTP_URL,
    name: config.MAIL_DOMAIN,
    connectionTimeout: TIMEOUT_MS,
    greetingTimeout: TIMEOUT_MS,
    socketTimeout: TIMEOUT_MS,
  });
  try {
    // verify(): connect, EHLO, STARTTLS when offered, and AUTH when the URL has credentials.
    await transport.verify();
    return { level: 'ok', name, detail: `${url.host} answered EHLO${auth}` };
  } catch (err) {
    const authFailed = (err as { code?: string }).code === 'EAUTH';
    return {
      level: 'fail',
      name,
      detail: `${url.host}: ${message(err)}`,
      fix: authFailed
        ? 'correct the user and password in OUTBOUND_SMTP_URL'
        : 'start the relay (Mailpit for a trial) or correct OUTBOUND_SMTP_URL',
    };
  } finally {
    transport.close();
  }
}

export async function checkPublicUrl(config: Config): Promise<CheckResult> {
  const name = 'portal';
  try {
    const res = await fetch(`${config.PUBLIC_URL}/healthz`, { redirect: 'manual', signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (res.status === 200) return { level: 'ok', name, detail: `${config.PUBLIC_URL}/healthz answered 200` };
    return {
      level: 'warn',
      name,
      detail: `${config.PUBLIC_URL}/healthz answered ${res.status}: ${(await res.text()).slice(0, 200)}`,
      fix: 'the body names the dependency that is down',
    };
  } catch (err) {
    return {
      level: 'warn',
      name,
      detail: `${config.PUBLIC_URL}/healthz did not answer: ${message(err)}`,
      fix: 'start replyline (npm start), or set PUBLIC_URL to the address browsers use',
    };
  }
}

export function createDoctorResolver(config: Pick<Config, 'DNS_SERVERS'>): Resolver {
  const resolver = new Resolver({ timeout: 2_000, tries: 2 });
  if (config.DNS_SERVERS.length) resolver.setServers(config.DNS_SERVERS);
  return resolver;
}

/** Answers that mean "the resolver answered, the name simply has no such record". */
const NO_RECORD = new Set(['ENOTFOUND', 'ENODATA']);

async function txt(resolver: Resolver, name: string): Promise<string[]> {
  try {
    return (await resolver.resolveTxt(name)).map((parts) => parts.join(''));
  } catch (err) {
    if (NO_RECORD.has((err as { code?: string }).code ?? '')) return [];
    throw err;
  }
}

export async function checkResolvers(config: Config, resolver: Resolver): Promise<CheckResult> {
  const name = 'dns';
  const servers = config.DNS_SERVERS.length ? config.DNS_SERVERS.join(', ') : `system resolver (${resolver.getServers().join(', ')})`;
  try {
    await txt(resolver, domainOf(config.SUPPORT_ADDRESSES[0]!));
    return { level: 'ok', name, detail: `${servers} answered` };
  } catch (err) {
    return {
      // Only staff authentication needs DNS; without answers every staff reply is held under dmarc.
      level: config.STAFF_AUTH === 'dmarc' ? 'fail' : 'warn',
      name,
      detail: `${servers} did not answer: ${(err as { code?: string }).code ?? message(err)}`,
      fix: 'set DNS_SERVERS=host:port to resolvers this machine can reach',
    };
  }
}

/** Common DKIM selectors: the selector is chosen by whoever signs, so doctor can only look where most providers put it. */
export const COMMON_DKIM_SELECTORS = ['default', 'selector1', 'selector2', 'google', 'k1', 's1', 's2', 'dkim', 'mail'];

export async function checkSupportDomain(config: Config, resolver: Resolver, domain: string, selectors: string[]): Promise<CheckResult[]> {
  const needed = config.STAFF_AUTH === 'dmarc';
  const authFix = (what: string) =>
    needed
      ? `${what}. Without it, staff replies from @${domain} are held as auth_failed (or set STAFF_AUTH=token)`
      : `${what} (not needed with STAFF_AUTH=token)`;
  const results: CheckResult[] = [];
  try {
    const spf = (await txt(resolver, domain)).find((r) => /^v=spf1(\s|$)/i.test(r));
    results.push(
      spf
        ? { level: 'ok', name: `spf ${domain}`, detail: spf }
        : {
            level: 'warn',
            name: `spf ${domain}`,
            detail: 'no SPF record',
            fix: authFix(`publish "v=spf1 … -all" for ${domain} naming the servers staff send from`),
          },
    );

    const dmarc = (await txt(resolver, `_dmarc.${domain}`)).find((r) => /^v=DMARC1/i.test(r));
    results.push(
      dmarc
        ? { level: 'ok', name: `dmarc ${domain}`, detail: dmarc }
        : {
            level: 'warn',
            name: `dmarc ${domain}`,
            detail: 'no DMARC record',
            fix: authFix(`publish "v=DMARC1; p=none" (or stricter) at _dmarc.${domain}`),
          },
    );

    let dkim: string | null = null;
    for (const s of selectors) {
      if ((await txt(resolver, `${s}._domainkey.${domain}`)).some((r) => /(^|;)\s*p=/i.test(r))) {
        dkim = s;
        break;
      }
    }
    results.push(
      dkim
        ? { level: 'ok', name: `dkim ${domain}`, detail: `key found under selector "${dkim}"` }
        : {
            level: 'warn',
            name: `dkim ${domain}`,
            detail: `no key under ${selectors.join(', ')}`,
            fix: authFix(
              `sign staff mail with DKIM for ${domain}; if you already do with another selector, run doctor --dkim-selector NAME`,
            ),
          },
    );

    let mx: Array<{ exchange: string; priority: number }> = [];
    try {
      mx = await resolver.resolveMx(domain);
    } catch (err) {
      if (!NO_RECORD.has((err as { code?: string }).code ?? '')) throw err;
    }
    results.push(
      mx.length
        ? {
            level: 'ok',
            name: `mx ${domain}`,
            detail: mx
              .sort((a, b) => a.priority - b.priority)
              .map((m) => `${m.priority} ${m.exchange}`)
              .join(', '),
          }
        : {
            level: 'warn',
            name: `mx ${domain}`,
            detail: 'no MX record: mail from the internet cannot reach this domain (fine for a local trial)',
            fix: `point an MX for ${domain} at this server's SMTP listener, or forward mail to it`,
          },
    );
  } catch (err) {
    results.push({
      level: 'warn',
      name: `records ${domain}`,
      detail: `lookup failed: ${(err as { code?: string }).code ?? message(err)}`,
      fix: 'see the dns line above',
    });
  }
  return results;
}
