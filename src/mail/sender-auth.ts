import { promises as dnsPromises } from 'node:dns';
import { isIPv4 } from 'node:net';
import { authenticate, type AuthenticateResult, type DnsResolver } from 'mailauth';
import { getDomain } from 'tldts';
import type { AppContext } from '../context.js';
import type { Config } from '../config.js';
import { findUserById } from '../db/queries/users.js';
import { domainOf, normalizeEmail } from '../core/address.js';
import type { ReplyToken } from './tokens.js';

/**
 * Decides whether a message claiming to come from a staff account really
 * does. Staff mail can change ticket status and reaches customers, so a
 * forged From must never pass: we rely only on what we verify ourselves
 * (SPF against the SMTP envelope, DKIM signatures, DMARC), never on headers
 * the sender wrote — an `Authentication-Results` header in the message is
 * just text to us, and mailauth computes its own.
 */
export interface StaffAuthInput {
  raw: Buffer;
  mailFrom: string;
  clientAddress: string;
  helo: string;
  /** The parsed, single From address of the message. */
  fromAddress: string;
  /** A validly signed reply token found in To/Cc, if any. */
  replyToken: ReplyToken | null;
  staffUserId: number;
}

export interface StaffAuthResult {
  ok: boolean;
  method: 'dmarc' | 'spf' | 'dkim' | 'token' | null;
  reason: string;
  details?: unknown;
}

const DNS_TIMEOUT_MS = 3_000;

/** A resolver for mailauth: the system's, or DNS_SERVERS (host:port list) when configured. */
export function createDnsResolver(config: Pick<Config, 'DNS_SERVERS'>): DnsResolver {
  const resolver = new dnsPromises.Resolver({ timeout: DNS_TIMEOUT_MS, tries: 2 });
  if (config.DNS_SERVERS.length > 0) resolver.setServers(config.DNS_SERVERS);
  return (name, rrtype) => resolver.resolve(name, rrtype as 'TXT');
}

/** smtp-server reports IPv4 clients on dual-stack sockets as ::ffff:a.b.c.d; SPF ip4: needs the bare form. */
function plainIp(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m && isIPv4(m[1]!) ? m[1]! : address;
}

/** Relaxed alignment (RFC 7489 §3.1): same organisational domain. */
export function alignedDomains(a: string, b: string): boolean {
  const org = (d: string) => (getDomain(d, { allowPrivateDomains: true }) ?? d).toLowerCase().replace(/\.$/, '');
  return org(a) === org(b);
}

function fail(reason: string, details?: unknown): StaffAuthResult {
  return { ok: false, method: null, reason, details };
}

/** Reduces mailauth's report to the verdict plus a compact, loggable summary. */
export function judgeAuthentication(result: AuthenticateResult, fromAddress: string): StaffAuthResult {
  const fromDomain = domainOf(fromAddress);
  const headerFrom = (result.dkim.headerFrom ?? []).map(normalizeEmail);
  const dkim = result.dkim.results
    .filter((r) => r.signingDomain)
    .map((r) => ({
      d: r.signingDomain!,
      result: r.status.result,
      aligned: Boolean(r.status.aligned),
      underSized: r.status.underSized ?? 0,
    }));
  const spf = result.spf ? { domain: result.spf.domain ?? null, result: result.spf.status.result } : null;
  const dmarc = result.dmarc ? { result: result.dmarc.status.result, policy: result.dmarc.policy ?? null } : null;
  const details = { fromDomain, headerFrom, spf, dkim, dmarc };

  // The signature and the DMARC check cover the message's own From header; it
  // must be the very address the pipeline identified as staff.
  if (headerFrom.length !== 1 || headerFrom[0] !== normalizeEmail(fromAddress)) {
    return fail('from header does not match the authenticated sender', details);
  }
  // A domain whose owner says "strict" or whose policy fails is never overridden by our relaxed checks.
  if (dmarc?.result === 'fail') return fail('dmarc fail', details);

  const spfAligned = spf?.result === 'pass' && spf.domain !== null && alignedDomains(spf.domain, fromDomain);
  // l= signatures let anyone append text after the signed part: an undersized body never counts.
  const dkimAligned = dkim.some((d) => d.result === 'pass' && d.aligned && d.underSized === 0 && alignedDomains(d.d, fromDomain));

  if (!spfAligned && !dkimAligned) {
    if (dmarc?.result === 'temperror' || spf?.result === 'temperror' || dkim.some((d) => d.result === 'temperror')) {
      return fail('dns temporary error', details);
    }
    return fail('neither spf nor dkim passed aligned with the from domain', details);
  }
  if (dmarc?.result === 'pass') return { ok: true, method: 'dmarc', reason: 'dmarc pass', details };
  if (dkimAligned) return { ok: true, method: 'dkim', reason: 'dkim pass aligned with from domain', details };
  return { ok: true, method: 'spf', reason: 'spf pass aligned with from domain', details };
}

/** What every inbound message's own From is worth: the mailauth verdict, computed before any rule runs. */
export type SenderAuth = StaffAuthResult;

export interface SenderAuthInput {
  raw: Buffer;
  mailFrom: string;
  clientAddress: string;
  helo: string;
  fromAddress: string;
}

/**
 * SPF/DKIM/DMARC for a message's From address. Network I/O (DNS): callers run
 * it before their transaction begins, never inside one.
 */
export async function authenticateSender(ctx: Pick<AppContext, 'config' | 'dns'>, input: SenderAuthInput): Promise<SenderAuth> {
  let result: AuthenticateResult;
  try {
    result = await authenticate(input.raw, {
      ip: plainIp(input.clientAddress),
      helo: input.helo || undefined,
      sender: input.mailFrom,
      mta: ctx.config.MAIL_DOMAIN,
      resolver: ctx.dns,
      // Never derive the client from Received headers: the sender writes those.
      trustReceived: false,
      // ARC would let a third party vouch for the message; BIMI fetches logos.
      disableArc: true,
      disableBimi: true,
    });
  } catch (err) {
    return fail('authentication check failed', { error: err instanceof Error ? err.message : String(err) });
  }
  return judgeAuthentication(result, input.fromAddress);
}

/**
 * Whether a message counts as written by `staff`, from the precomputed sender
 * verdict (dmarc mode) or the reply token it was addressed to (token mode).
 * Pure: the pipeline computed `sender` before its transaction.
 */
export function staffVerdict(
  config: Pick<Config, 'STAFF_AUTH'>,
  staff: { id: number; email: string; role: string },
  fromAddress: string,
  token: ReplyToken | null,
  sender: SenderAuth | null,
): StaffAuthResult {
  if (staff.role !== 'staff') return fail('not a staff account');
  if (normalizeEmail(staff.email) !== normalizeEmail(fromAddress)) return fail('from does not match the staff account');
  if (config.STAFF_AUTH === 'token') {
    if (!token) return fail('no reply token');
    if (token.userId !== staff.id) return fail('reply token belongs to another user', { tokenUserId: token.userId });
    return { ok: true, method: 'token', reason: 'valid staff reply token and matching from', details: { ticketId: token.ticketId } };
  }
  return sender ?? fail('sender authentication was not computed');
}

export async function authenticateStaff(ctx: AppContext, input: StaffAuthInput): Promise<StaffAuthResult> {
  const staff = await findUserById(ctx.db, input.staffUserId);
  if (!staff) return fail('not a staff account');
  const sender = ctx.config.STAFF_AUTH === 'token' ? null : await authenticateSender(ctx, input);
  return staffVerdict(ctx.config, staff, input.fromAddress, input.replyToken, sender);
}
