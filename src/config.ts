import { z } from 'zod';
import { isValidEmail } from './core/address.js';

/**
 * Every setting replyline reads from the environment, parsed once.
 * `loadConfig` reports *all* problems in one message so an operator fixes a
 * broken deployment in one pass instead of one restart per typo.
 */

export const DEV_SECRET_KEY = 'replyline-dev-secret-do-not-use-in-production';

const ROLES = ['smtp', 'worker', 'portal'] as const;
export type Role = (typeof ROLES)[number];

const hostPort = (fallbackHost: string) =>
  z.string().transform((value, ctx) => {
    const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value.trim());
    const port = match ? Number(match[3]) : NaN;
    if (!match || port > 65535) {
      ctx.addIssue({ code: 'custom', message: `expected host:port, got "${value}"` });
      return z.NEVER;
    }
    return { host: match[1] ?? (match[2] || fallbackHost), port };
  });

const emailList = z.string().transform((value, ctx) => {
  const items = value
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  for (const item of items) {
    if (!isValidEmail(item)) {
      ctx.addIssue({ code: 'custom', message: `"${item}" is not an email address` });
    }
  }
  if (items.length === 0) ctx.addIssue({ code: 'custom', message: 'at least one address is required' });
  return items;
});

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes' || v === 'on');

const timeZone = z.string().refine((tz) => {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}, 'expected an IANA time zone such as Asia/Tokyo');

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);

const DURATION_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** One way to write a duration: "3600" (seconds), "90m", "12h", "30d" → milliseconds. */
function parseDuration(value: string, ctx: z.RefinementCtx): number {
  const m = /^(\d{1,9})\s*([smhd]?)$/i.exec(value.trim());
  if (!m || Number(m[1]) === 0) {
    ctx.addIssue({ code: 'custom', message: `expected a duration such as 3600, 90m, 12h or 30d, got "${value}"` });
    return z.NEVER;
  }
  return Number(m[1]) * DURATION_UNITS[(m[2] || 's').toLowerCase()]!;
}

const duration = z.union([z.string(), z.number()]).transform((value, ctx) => parseDuration(String(value), ctx));

/** A duration, or "off" (null) for an automation that can be disabled. */
const durationOrOff = z.string().transform((value, ctx) => (value.trim().toLowerCase() === 'off' ? null : parseDuration(value, ctx)));

const schema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).prefault('development'),
    DATABASE_URL: z.url().prefault('postgres://postgres@127.0.0.1:5432/replyline'),
    // One process with every role holds up to ~8 at once under load (accept, 2 inbound and 3 outbound batches, sweeper, metrics), before the portal's.
    DATABASE_POOL_SIZE: int(1, 200).prefault(20),
    REDIS_URL: z.url().prefault('redis://127.0.0.1:6379'),
    SMTP_LISTEN: hostPort('0.0.0.0').prefault('0.0.0.0:2525'),
    HTTP_LISTEN: hostPort('0.0.0.0').prefault('0.0.0.0:3000'),
    PUBLIC_URL: z.url().prefault('http://localhost:3000'),
    SUPPORT_ADDRESSES: emailList.prefault('support@localhost'),
    MAIL_DOMAIN: z
      .string()
      .regex(/^[a-z0-9.-]+$/i, 'expected a bare domain such as help.example.com')
      .optional(),
    OUTBOUND_SMTP_URL: z.url().prefault('smtp://127.0.0.1:1025'),
    MAIL_FROM: z.string().optional(),
    // The name customers see in the portal header and mail signatures (unset: "Support" / "サポート").
    BRAND_NAME: z
      .string()
      .trim()
      .max(100)
      .regex(/^[^\p{Cc}<>"]+$/u, 'plain text without control characters, quotes or angle brackets')
      .optional(),
    SECRET_KEY: z.string().min(32, 'must be at least 32 characters').optional(),
    REGISTRATION: z.enum(['open', 'closed']).prefault('open'),
    QUEUE_PREFIX: z
      .string()
      .regex(/^[\w:.-]+$/)
      .prefault('replyline'),
    DNS_SERVERS: z
      .string()
      .optional()
      .transform((v) =>
        v
          ? v
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean)
          : [],
      ),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).prefault('info'),
    REPLYLINE_ROLES: z
      .string()
      .prefault('all')
      .transform((value, ctx) => {
        const parts = value
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
        if (parts.length === 1 && parts[0] === 'all') return [...ROLES];
        for (const p of parts) {
          if (!(ROLES as readonly string[]).includes(p)) {
            ctx.addIssue({ code: 'custom', message: `unknown role "${p}" (use all or any of ${ROLES.join(',')})` });
          }
        }
        return [...new Set(parts)] as Role[];
      }),
    DEFAULT_LOCALE: z.enum(['en', 'ja']).prefault('en'),
    SHUTDOWN_TIMEOUT_MS: int(1000).prefault(30_000),
    /** How often workers look for rows that never got a job (Redis was down, a process was killed). */
    SWEEP_INTERVAL_MS: int(100).prefault(15_000),
    /** When set, GET /metrics requires `Authorization: Bearer <METRICS_TOKEN>`. */
    METRICS_TOKEN: z.string().min(16).optional(),
    /** How long the table counts behind /metrics are reused (a scrape every 15 s is typical). */
    METRICS_CACHE_MS: int(0, 3_600_000).prefault(10_000),

    // Inbound
    SMTP_MAX_SIZE: int(1024).prefault(25 * 1024 * 1024),
    SMTP_MAX_RECIPIENTS: int(1, 1000).prefault(50),
    SMTP_TLS_KEY: z.string().optional(),
    SMTP_TLS_CERT: z.string().optional(),
    SMTP_CONN_PER_IP_PER_MIN: int(1).prefault(120),
    SMTP_MSG_PER_IP_PER_MIN: int(1).prefault(600),
    /** Open SMTP sessions per client IP (IPv6: per /64) at one time. */
    SMTP_SESSIONS_PER_IP: int(1).prefault(20),
    INBOUND_SWEEP_GRACE_MS: int(1000).prefault(30_000),
    INBOUND_CONCURRENCY: int(1, 256).prefault(32),
    MAX_CCS: int(0, 1000).prefault(48),
    ATTACHMENT_MAX_BYTES: int(1024).prefault(20 * 1024 * 1024),
    /** Bytes of files one customer may upload through the portal in any 24 hours (staff are exempt). */
    UPLOAD_DAILY_BYTES: int(0).prefault(200 * 1024 * 1024),
    SENDER_BREAKER_MAX: int(1).prefault(20),
    SENDER_BREAKER_WINDOW_MS: int(1000).prefault(10 * 60_000),
    /** Bytes of processed mail one sender address may bring in 24 h; more is held as sender_quota. */
    SENDER_DAILY_BYTES: int(1024).prefault(500 * 1024 * 1024),
    /** Wall-clock limit for parsing one message in the parse worker (the "2 s per message" guard). */
    INBOUND_PARSE_TIMEOUT_MS: int(1, 600_000).prefault(2_000),

    // Outbound
    OUTBOUND_CONCURRENCY: int(1, 64).prefault(4),
    /** First retry delay after a relay failure; doubles each attempt (12 attempts ≈ 5.7 h at 5 s). */
    OUTBOUND_RETRY_BASE_MS: int(10).prefault(5_000),
    /**
     * `on`: each mail's envelope MAIL FROM is its own signed return path
     * (bounce+<id>.<sig>@MAIL_DOMAIN), so a bounce names the mail it concerns.
     * `off`: the MAIL_FROM address, for relays that only accept a fixed sender.
     */
    VERP: z.enum(['on', 'off']).prefault('on'),
    STAFF_AUTH: z.enum(['dmarc', 'token']).prefault('dmarc'),
    /** The first staff member to reply publicly to an unassigned ticket becomes its assignee. */
    AUTO_ASSIGN_FIRST_REPLIER: bool.prefault('true'),
    /** A second agent's reply to a customer message another agent answered this recently is held (collision); "off" never holds. */
    COLLISION_WINDOW: durationOrOff.prefault('2m'),
    ACK_MAX_PER_SENDER_PER_HOUR: int(0).prefault(3),
    BREAKER_PER_TICKET: int(1).prefault(10),
    BREAKER_PER_RECIPIENT: int(1).prefault(30),
    BREAKER_WINDOW_MS: int(1000).prefault(10 * 60_000),
    /** Files ride along as MIME attachments up to this many bytes per mail; beyond it each file is a signed link. */
    MAIL_ATTACH_MAX_BYTES: int(0).prefault(10 * 1024 * 1024),
    /** How long a file link in a mail works: a number of seconds, or with a unit (90m, 12h, 30d). */
    FILE_LINK_TTL: duration.prefault('30d'),
    /** Earlier public messages quoted below the new one in each ticket mail. */
    MAIL_HISTORY_MESSAGES: int(0, 50).prefault(5),

    // Ticket lifecycle automations (src/jobs/lifecycle.ts); each takes a duration or "off".
    SOLVED_CLOSE_AFTER: durationOrOff.prefault('4d'),
    PENDING_REMINDER_AFTER: durationOrOff.prefault('3d'),
    PENDING_SOLVE_AFTER: durationOrOff.prefault('7d'),
    /** How often the scheduled lifecycle job runs (one run per interval across all workers). */
    LIFECYCLE_INTERVAL_MS: int(1000).prefault(60_000),
    /** The satisfaction survey (CSAT): "on" or "off", and how long after a ticket is solved it is mailed. */
    CSAT: bool.prefault('on'),
    CSAT_AFTER: duration.prefault('24h'),
    /** Local time of the daily staff digest ("HH:MM"), or "off". */
    STAFF_DIGEST_AT: z
      .string()
      .prefault('09:00')
      .transform((value, ctx) => {
        const v = value.trim().toLowerCase();
        if (v === 'off') return null;
        const m = /^([01]?\d|2[0-3]):([0-5]\d)$/.exec(v);
        if (!m) {
          ctx.addIssue({ code: 'custom', message: `expected a time such as 09:00, or off, got "${value}"` });
          return z.NEVER;
        }
        return { hour: Number(m[1]), minute: Number(m[2]) };
      }),
    STAFF_DIGEST_TIME_ZONE: timeZone.prefault('UTC'),

    // Portal
    PASSWORD_MIN_LENGTH: int(6, 256).prefault(8),
    PASSWORD_MIN_CLASSES: int(0, 4).prefault(3),
    PASSWORD_FORBID_EMAIL_LOCAL: bool.prefault('true'),
    SESSION_IDLE_MS: int(60_000).prefault(2 * 60 * 60_000),
    SESSION_ABSOLUTE_MS: int(60_000).prefault(7 * 24 * 60 * 60_000),
    // Attempts per IP / per account: login per 15 minutes, get-a-password, signup and set-password per hour.
    RATE_LOGIN_PER_IP: int(1).prefault(30),
    RATE_LOGIN_PER_ACCOUNT: int(1).prefault(10),
    RATE_PASSWORD_PER_IP: int(1).prefault(20),
    RATE_PASSWORD_PER_ACCOUNT: int(1).prefault(5),
    // Minimum response time of /password/new and /signup, so known and unknown addresses look alike.
    PORTAL_RESPONSE_FLOOR_MS: int(0, 10_000).prefault(400),
    // Behind a reverse proxy: take the client IP from the right-most X-Forwarded-For entry.
    TRUST_PROXY: bool.prefault('false'),
    // Slowloris: Node's defaults let a client dribble headers for 60 s and a body for 5 min.
    /** The whole request head must arrive within this. */
    HTTP_HEADERS_TIMEOUT_MS: int(100, 600_000).prefault(10_000),
    /** The whole request, body (uploads) included, must arrive within this. */
    HTTP_REQUEST_TIMEOUT_MS: int(100, 3_600_000).prefault(120_000),
    PORTAL_TIME_ZONE: timeZone.prefault('UTC'),
    // How long a signed-out visitor's request waits for its confirmation link before it is discarded.
    REQUEST_CONFIRM_TTL: duration.prefault('24h'),
  })
  .superRefine((c, ctx) => {
    if (c.NODE_ENV === 'production' && !c.SECRET_KEY) {
      ctx.addIssue({ code: 'custom', path: ['SECRET_KEY'], message: 'is required when NODE_ENV=production' });
    }
    if (c.PENDING_REMINDER_AFTER !== null && c.PENDING_SOLVE_AFTER !== null && c.PENDING_REMINDER_AFTER >= c.PENDING_SOLVE_AFTER) {
      ctx.addIssue({
        code: 'custom',
        path: ['PENDING_REMINDER_AFTER'],
        message: 'must be shorter than PENDING_SOLVE_AFTER (the reminder comes first)',
      });
    }
    if (c.HTTP_HEADERS_TIMEOUT_MS > c.HTTP_REQUEST_TIMEOUT_MS) {
      ctx.addIssue({ code: 'custom', path: ['HTTP_HEADERS_TIMEOUT_MS'], message: 'must not be longer than HTTP_REQUEST_TIMEOUT_MS' });
    }
    if (Boolean(c.SMTP_TLS_KEY) !== Boolean(c.SMTP_TLS_CERT)) {
      ctx.addIssue({ code: 'custom', path: ['SMTP_TLS_CERT'], message: 'SMTP_TLS_KEY and SMTP_TLS_CERT go together' });
    }
  });

export type Env = z.input<typeof schema>;

function deriveConfig(parsed: z.output<typeof schema>) {
  const publicUrl = new URL(parsed.PUBLIC_URL);
  const supportDomain = parsed.SUPPORT_ADDRESSES[0]!.split('@')[1]!;
  const mailDomain = (parsed.MAIL_DOMAIN ?? supportDomain).toLowerCase();
  return {
    ...parsed,
    PUBLIC_URL: publicUrl.origin + publicUrl.pathname.replace(/\/$/, ''),
    MAIL_DOMAIN: mailDomain,
    // Quoted: a brand such as "Acme, Inc." is one display name, not two addresses.
    MAIL_FROM: parsed.MAIL_FROM ?? (parsed.BRAND_NAME ? `"${parsed.BRAND_NAME}"` : 'Support') + ` <${parsed.SUPPORT_ADDRESSES[0]}>`,
    SECRET_KEY: parsed.SECRET_KEY ?? DEV_SECRET_KEY,
    usingDevSecret: !parsed.SECRET_KEY,
    secureCookies: publicUrl.protocol === 'https:',
  };
}

export type Config = Readonly<ReturnType<typeof deriveConfig>>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Settings hold arrays and objects (SUPPORT_ADDRESSES, SMTP_LISTEN): freeze those too, not just the top level. */
function deepFreeze<T extends object>(value: T): Readonly<T> {
  for (const v of Object.values(value)) if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) deepFreeze(v as object);
  return Object.freeze(value);
}

/** Parses an environment (default: process.env) into a frozen Config, or throws ConfigError listing every problem. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // Empty strings count as unset: docker-compose and shells produce them for "VAR=".
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = schema.safeParse(cleaned);
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((i) => `${i.path.join('.') || '(env)'}: ${i.message}`));
  }
  return deepFreeze(deriveConfig(result.data));
}
