import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { inject } from 'vitest';
import { createDb, type Db } from '../../../src/db/database.js';
import { startRelaySink, type RelaySink } from '../../outbound/support/relay-sink.js';
import { createTestDatabase, NO_DNS, testQueuePrefix } from '../../support/env.js';
import { FaultProxy } from '../../support/fault-proxy.js';
import { spawnReplyline, type ReplylineProcess } from '../../support/process.js';
import { freePort } from '../../support/net.js';

/**
 * One replyline *process* (as in production) for a fault scenario: its own
 * database and queue prefix, a fixed SMTP port that survives restarts, an
 * in-process relay sink, and optional fault proxies in front of PostgreSQL
 * and Redis. `db` talks to PostgreSQL directly, so counting works while the
 * proxy is cut.
 */
export interface FaultRun {
  tag: string;
  smtpPort: number;
  db: Db;
  sink: RelaySink;
  pgProxy?: FaultProxy;
  redisProxy?: FaultProxy;
  proc: ReplylineProcess;
  start(): Promise<ReplylineProcess>;
  teardown(): Promise<void>;
}

export async function startFaultRun(
  opts: { proxyPostgres?: boolean; proxyRedis?: boolean; env?: Record<string, string> } = {},
): Promise<FaultRun> {
  const database = await createTestDatabase();
  const sink = await startRelaySink();
  const redisUrl = inject('redisUrl');
  const pgUrl = new URL(database.url);
  const redis = new URL(redisUrl);
  const pgProxy = opts.proxyPostgres ? await FaultProxy.start({ host: pgUrl.hostname, port: Number(pgUrl.port || 5432) }) : undefined;
  const redisProxy = opts.proxyRedis ? await FaultProxy.start({ host: redis.hostname, port: Number(redis.port || 6379) }) : undefined;
  const smtpPort = await freePort();
  const env: Record<string, string> = {
    DATABASE_URL: pgProxy ? pgProxy.url(database.url) : database.url,
    REDIS_URL: redisProxy ? redisProxy.url(redisUrl) : redisUrl,
    QUEUE_PREFIX: testQueuePrefix(),
    SMTP_LISTEN: `127.0.0.1:${smtpPort}`,
    HTTP_LISTEN: '127.0.0.1:0',
    SUPPORT_ADDRESSES: 'support@help.test',
    MAIL_DOMAIN: 'help.test',
    SECRET_KEY: 'fault-test-secret-0123456789abcdef0123456789',
    OUTBOUND_SMTP_URL: sink.url,
    LOG_LEVEL: 'info',
    // Load comes from one IP; the per-IP limits are not what these tests are about.
    SMTP_CONN_PER_IP_PER_MIN: '1000000',
    SMTP_MSG_PER_IP_PER_MIN: '1000000',
    SWEEP_INTERVAL_MS: '1000',
    INBOUND_SWEEP_GRACE_MS: '2000',
    OUTBOUND_RETRY_BASE_MS: '300',
    // Thousands of SPF/DKIM/DMARC checks: never against the machine's resolver, which throttles bursts.
    DNS_SERVERS: NO_DNS,
    ...opts.env,
  };
  const db = createDb(database.url, 2);
  const run: FaultRun = {
    tag: `f${randomBytes(3).toString('hex')}`,
    smtpPort,
    db,
    sink,
    pgProxy,
    redisProxy,
    proc: undefined as unknown as ReplylineProcess,
    async start() {
      run.proc = await spawnReplyline(env);
      return run.proc;
    },
    async teardown() {
      if (run.proc && run.proc.child.exitCode === null) {
        run.proc.child.kill('SIGKILL');
        await run.proc.exited;
      }
      await db.destroy();
      await pgProxy?.close();
      await redisProxy?.close();
      await sink.stop().catch(() => {});
      await database.drop();
    },
  };
  await run.start();
  return run;
}

export interface Counts {
  acked: number;
  rows: number;
  distinctMessages: number;
  pending: number;
  held: number;
  tickets: number;
  distinctTicketSubjects: number;
  outboundSent: number;
  sinkReceived: number;
  sinkDuplicates: number;
}

/** What the scenario prints and asserts: every number counted from the durable state. */
export async function countRun(run: FaultRun, acked: number): Promise<Counts> {
  const like = `${run.tag} message %`;
  const inbound = await sql<{ rows: string; distinct_messages: string; pending: string; held: string }>`
    select count(*) as rows, count(distinct header_message_id) as distinct_messages,
           count(*) filter (where status = 'received') as pending,
           count(*) filter (where status = 'held') as held
    from inbound_messages where position(${Buffer.from(`${run.tag}.`)}::bytea in raw) > 0`.execute(run.db);
  const tickets = await sql<{ n: string; d: string }>`
    select count(*) as n, count(distinct subject) as d from tickets where subject like ${like}`.execute(run.db);
  const sent = await sql<{ n: string }>`
    select count(*) as n from outbound_mails where status = 'sent' and recipient like ${`load-${run.tag}-%`}`.execute(run.db);
  const mine = run.sink.received.filter((m) => m.rcptTo.some((r) => r.startsWith(`load-${run.tag}-`)));
  const byMessageId = new Map<string, number>();
  for (const m of mine) {
    const id = /^Message-ID:\s*(\S+)/im.exec(m.raw.toString('latin1'))?.[1] ?? '';
    byMessageId.set(id, (byMessageId.get(id) ?? 0) + 1);
  }
  const i = inbound.rows[0]!;
  return {
    acked,
    rows: Number(i.rows),
    distinctMessages: Number(i.distinct_messages),
    pending: Number(i.pending),
    held: Number(i.held),
    tickets: Number(tickets.rows[0]!.n),
    distinctTicketSubjects: Number(tickets.rows[0]!.d),
    outboundSent: Number(sent.rows[0]!.n),
    sinkReceived: mine.length,
    sinkDuplicates: [...byMessageId.values()].reduce((a, n) => a + (n - 1), 0),
  };
}

export function printCounts(scenario: string, c: Counts, extra: Record<string, number | string> = {}): void {
  const parts = Object.entries({ ...c, ...extra }).map(([k, v]) => `${k}=${v}`);
  console.log(`[fault:${scenario}] ${parts.join(' ')}`);
}

/** Polls until `done()` holds (all processed, all sent…), or fails with the last counts. */
export async function waitFor<T>(what: string, probe: () => Promise<T>, done: (v: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T = await probe();
  while (!done(last)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 500));
    last = await probe();
  }
  return last;
}
