import { ConfigError, type Config } from '../config.js';
import { domainOf } from '../core/address.js';
import { parseCliArgs } from './args.js';
import {
  checkPostgres,
  checkPublicUrl,
  checkRedis,
  checkRelay,
  checkResolvers,
  checkSupportDomain,
  COMMON_DKIM_SELECTORS,
  createDoctorResolver,
  type CheckResult,
} from './doctor-checks.js';
import type { CliCommand, CliIo } from './types.js';

/**
 * `doctor`: what a newcomer runs after setup. One line per check, each failure
 * with what to do; exit 1 when anything would stop mail flowing (config,
 * PostgreSQL, Redis, the relay, DNS under STAFF_AUTH=dmarc). It changes
 * nothing: no database is created and no migration applied.
 */

const USAGE = "doctor [--dkim-selector NAME]   (checks config, PostgreSQL, Redis, relay, portal, DNS and the support domains' records)";
const LABEL = { ok: 'ok  ', warn: 'warn', fail: 'FAIL' } as const;

export function formatResult(r: CheckResult): string {
  return `${LABEL[r.level]}  ${r.name}: ${r.detail}${r.fix && r.level !== 'ok' ? ` — fix: ${r.fix}` : ''}`;
}

export async function runDoctor(config: Config | ConfigError, io: CliIo, args: string[]): Promise<number> {
  const { values } = parseCliArgs(args, { 'dkim-selector': { type: 'string', multiple: true } }, USAGE);
  const results: CheckResult[] = [];
  const report = (r: CheckResult) => {
    results.push(r);
    io.out(formatResult(r));
  };
  if (config instanceof ConfigError) {
    report({
      level: 'fail',
      name: 'config',
      detail: config.problems.join('; '),
      fix: 'correct these environment variables (README, Configuration)',
    });
    return 1;
  }
  report({
    level: 'ok',
    name: 'config',
    detail: `valid (support: ${config.SUPPORT_ADDRESSES.join(', ')}; STAFF_AUTH=${config.STAFF_AUTH})`,
  });
  // Independent network checks run together, so a newcomer waits for the slowest, not the sum.
  const resolver = createDoctorResolver(config);
  const [postgres, redis, relay, portal, dns] = await Promise.all([
    checkPostgres(config),
    checkRedis(config),
    checkRelay(config),
    checkPublicUrl(config),
    checkResolvers(config, resolver),
  ]);
  for (const r of [postgres, redis, relay, portal, dns]) report(r);
  if (dns.level === 'ok') {
    const selectors = values['dkim-selector']?.length ? values['dkim-selector'] : COMMON_DKIM_SELECTORS;
    for (const domain of [...new Set(config.SUPPORT_ADDRESSES.map(domainOf))]) {
      for (const r of await checkSupportDomain(config, resolver, domain, selectors)) report(r);
    }
  }
  const failed = results.filter((r) => r.level === 'fail').length;
  const warned = results.filter((r) => r.level === 'warn').length;
  io.out(
    failed
      ? `${failed} problem(s) stop mail from flowing; fix the FAIL lines above.`
      : `mail can flow${warned ? `; ${warned} warning(s) above` : ''}.`,
  );
  return failed ? 1 : 0;
}

export const doctorCommands: CliCommand[] = [
  {
    words: ['doctor'],
    usage: USAGE,
    run: async () => {
      throw new Error('doctor runs standalone');
    },
    standalone: runDoctor,
  },
];
