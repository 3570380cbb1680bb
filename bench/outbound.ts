import { randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';
import pg from 'pg';
import { sql } from 'kysely';
import type { RunningApp } from '../src/app.js';
import { loadConfig, type Config } from '../src/config.js';
import { createDb, type Db } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { enqueueOutbound } from '../src/jobs/send-mail.js';
import { OUTBOUND_BATCHES_IN_FLIGHT } from '../src/jobs/outbound/deliver-batch.js';
import { composeOutboundMail } from '../src/mail/compose.js';
import { makeMessageId } from '../src/mail/tokens.js';
import { compiledStartApp, emitResult, percentile, round, type BenchResult } from './lib.js';
import { dropKeysWithPrefix } from '../test/support/redis.js';
import { offerLoad } from './outbound-load.js';
import { now, startSink } from './outbound-sink.js';

/**
 * npm run bench:outbound
 *
 * 1. Throughput: 10,000 outbox rows delivered by replyline's send-mail
 *    workers (BullMQ → row lock → breakers → render → pooled SMTP → mark
 *    sent) against, in the same run, bare nodemailer pooled sending of
 *    10,000 equivalent messages (same rendered bytes) to the same sink.
 * 2. Latency: at 100 inbound msg/s offered load, p95 from the inbound 250
 *    to the acknowledgement reaching the sink.
 * The sink (a draining smtp-server) and the inbound load generator run in
 * child processes, so their work never shares the measured event loop.
 * BENCH_LOG_LEVEL (warn) sets the measured app's log level: `debug` logs
 * each batch the workers take, with its jobs, rows and time.
 */

const startApp = await compiledStartApp();
const N = Number(process.env.BENCH_OUTBOUND_N ?? 10_000);
const WARMUP = 200;
const ROUNDS = 5;
const CONCURRENCY = Number(process.env.BENCH_OUTBOUND_CONCURRENCY ?? 8);
const RATE = Number(process.env.BENCH_OUTBOUND_RATE ?? 100);
const LOAD_SECONDS = Number(process.env.BENCH_OUTBOUND_LOAD_SECONDS ?? 20);
const SERVER_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

// ---------- helpers ----------

async function createDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `replyline_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: SERVER_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: SERVER_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

function benchConfig(databaseUrl: string, sinkUrl: string, extra: Record<string, string> = {}): Config {
  return loadConfig({
    NODE_ENV: 'production',
    DATABASE_URL: databaseUrl,
    DATABASE_POOL_SIZE: String(CONCURRENCY + 8),
    REDIS_URL,
    QUEUE_PREFIX: `rlbench_${randomBytes(4).toString('hex')}`,
    OUTBOUND_SMTP_URL: sinkUrl,
    OUTBOUND_CONCURRENCY: String(CONCURRENCY),
    SUPPORT_ADDRESSES: 'support@bench.test',
    MAIL_DOMAIN: 'bench.test',
    PUBLIC_URL: 'http://127.0.0.1:3000',
    SECRET_KEY: randomBytes(24).toString('hex'),
    // Each inbound mail's SPF/DKIM/DMARC lookups fail at once on a closed local port; the machine's own
    // resolver throttles bursts and would measure it, not replyline (see README, Sender trust).
    DNS_SERVERS: '127.0.0.1:9',
    SMTP_LISTEN: '127.0.0.1:0',
    HTTP_LISTEN: '127.0.0.1:0',
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
    INBOUND_SWEEP_GRACE_MS: '600000',
    ...extra,
  });
}

/** count customers, each with a ticket, a first message and one ticket_update row. Returns the row ids. */
async function seedOutbox(db: Db, config: Config, count: number, tag: string): Promise<number[]> {
  const ids: number[] = [];
  for (let start = 0; start < count; start += 1000) {
    const n = Math.min(1000, count - start);
    const users = await db
      .insertInto('users')
      .values(Array.from({ length: n }, (_, i) => ({ email: `c${tag}-${start + i}@customers.test`, name: `Customer ${start + i}` })))
      .returning('id')
      .execute();
    const staff = await db
      .insertInto('users')
      .values({ email: `agent-${tag}-${start}@staff.test`, name: 'Agent', role: 'staff' })
      .returning('id')
      .executeTakeFirstOrThrow();
    const tickets = await db
      .insertInto('tickets')
      .values(users.map((u, i) => ({ subject: `Benchmark request ${start + i}`, requester_id: u.id, updated_at: new Date() })))
      .returning(['id', 'requester_id'])
      .execute();
    await db
      .insertInto('ticket_participants')
      .values(tickets.map((t) => ({ ticket_id: t.id, user_id: t.requester_id, role: 'requester' as const })))
      .execute();
    const body = 'Thanks for your patience. We replaced the toner and the printer works again.\n\nBest regards,\nAgent';
    const messages = await db
      .insertInto('messages')
      .values(
        tickets.map((t) => ({ ticket_id: t.id, author_id: staff.id, body_text: body, message_id: `bench.${t.id}.${tag}@staff.test` })),
      )
      .returning(['id', 'ticket_id'])
      .execute();
    const rows = await db
      .insertInto('outbound_mails')
      .values(
        messages.map((m, i) => ({
          kind: 'ticket_update' as const,
          recipient: `c${tag}-${start + i}@customers.test`,
          user_id: users[i]!.id,
          ticket_id: m.ticket_id,
          ticket_message_id: m.id,
          payload: '{}',
          message_id: makeMessageId(config.SECRET_KEY, config.MAIL_DOMAIN, m.ticket_id),
        })),
      )
      .returning('id')
      .execute();
    ids.push(...rows.map((r) => r.id));
  }
  return ids;
}

/** The production producer: one send-mail job per OUTBOUND_CONCURRENCY rows of a commit. */
async function enqueueAll(app: RunningApp, ids: number[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 1000) await enqueueOutbound(app.ctx, ids.slice(i, i + 1000));
}

// ---------- part 1: throughput ----------

type Pool = ReturnType<typeof nodemailer.createTransport>;

async function bareSend(
  transport: Pool,
  sample: Awaited<ReturnType<typeof composeOutboundMail>>,
  count: number,
  tag: string,
): Promise<void> {
  let next = 0;
  // Keep the pool fed like BullMQ's concurrency does: CONCURRENCY × 2 in flight.
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const to = `bare-${tag}-${i}@customers.test`;
      await transport.sendMail({
        from: sample.from,
        to: { name: sample.to.name, address: to },
        replyTo: sample.replyTo,
        subject: sample.subject,
        text: sample.text,
        html: sample.html,
        messageId: `<bare.${tag}.${i}.${randomBytes(6).toString('hex')}@bench.test>`,
        inReplyTo: sample.inReplyTo,
        references: sample.references,
        headers: sample.headers,
        envelope: { from: sample.envelope.from, to: [to] },
      });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY * 2 }, worker));
}

async function throughput(result: BenchResult): Promise<void> {
  const sink = await startSink();
  const database = await createDatabase();
  const config = benchConfig(database.url, sink.url, { REPLYLINE_ROLES: 'worker' });
  const seedDb = createDb(database.url, 4);
  await migrateToLatest(seedDb);
  const warmIds = await seedOutbox(seedDb, config, WARMUP, 'w');
  const ids = await seedOutbox(seedDb, config, N, 'm');
  const sample = await composeOutboundMail(seedDb, config, { id: ids[0]! });
  await seedDb.destroy();
  console.log(
    `seeded ${N} outbox rows (+${WARMUP} warm-up); sample message ${Buffer.byteLength(sample.text) + Buffer.byteLength(sample.html)} bytes of body`,
  );

  const bare = nodemailer.createTransport({
    url: sink.url,
    pool: true,
    maxConnections: CONCURRENCY,
    maxMessages: 1000,
    name: 'bench.test',
  });
  const app = await startApp(config);
  try {
    await bareSend(bare, sample, WARMUP, 'warm');
    await enqueueAll(app, warmIds);
    await sink.waitCount(2 * WARMUP, 60_000);

    // Interleaved rounds: this machine is shared, and load from elsewhere
    // should hit both sides alike rather than whichever ran second.
    let bareMs = 0;
    let replylineMs = 0;
    // CPU of this process (all threads) per phase: unlike wall time, barely moved by other load on the machine.
    let bareCpu = 0;
    let replylineCpu = 0;
    const per = Math.ceil(N / ROUNDS);
    for (let r = 0; r < ROUNDS; r++) {
      const slice = ids.slice(r * per, (r + 1) * per);
      let t = now();
      let c = cpuMs();
      await bareSend(bare, sample, slice.length, `r${r}`);
      bareMs += now() - t;
      bareCpu += cpuMs() - c;
      sink.events.length = 0;
      t = now();
      c = cpuMs();
      await enqueueAll(app, slice);
      await sink.waitCount(slice.length, 600_000);
      replylineMs += now() - t;
      replylineCpu += cpuMs() - c;
    }
    console.log(
      `CPU of this process per mail: bare nodemailer ${round(bareCpu / N, 3)} ms, replyline outbox ${round(replylineCpu / N, 3)} ms (PostgreSQL and Redis not included)`,
    );
    result.figures.push({
      label: 'CPU of the sending process per mail: bare nodemailer / replyline outbox',
      value: `${round(bareCpu / N, 3)} / ${round(replylineCpu / N, 3)}`,
      unit: 'ms',
    });
    const bareRate = N / (bareMs / 1000);
    const rate = N / (replylineMs / 1000);
    // The last commits may land just after the sink's 250: wait for the rows, not just the bytes.
    for (let i = 0; i < 100; i++) {
      const q = await app.ctx.db
        .selectFrom('outbound_mails')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('status', '=', 'queued')
        .executeTakeFirstOrThrow();
      if (Number(q.n) === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const sent = await app.ctx.db
      .selectFrom('outbound_mails')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('status', '=', 'sent')
      .executeTakeFirstOrThrow();
    console.log(`bare nodemailer pooled: ${round(bareRate, 1)} msg/s; replyline outbox: ${round(rate, 1)} msg/s; rows sent ${sent.n}`);
    const ratio = rate / bareRate;
    result.ratios.push({ label: 'outbox delivery rate / bare nodemailer pooled rate', value: ratio, target: '≥ 0.5', pass: ratio >= 0.5 });
    result.figures.push(
      { label: 'bare nodemailer pooled', value: round(bareRate, 1), unit: 'msg/s' },
      { label: 'replyline outbox delivery', value: round(rate, 1), unit: 'msg/s' },
      { label: 'rows marked sent', value: `${Number(sent.n) - WARMUP} / ${N}`, target: 'all', pass: Number(sent.n) - WARMUP === N },
      {
        label: 'SMTP connections (both sides) / sends in flight: bare, replyline',
        value: `${CONCURRENCY} / ${CONCURRENCY * 2}, ${OUTBOUND_BATCHES_IN_FLIGHT} batches of ≤ ${CONCURRENCY} rows at once`,
      },
      { label: 'interleaved rounds', value: ROUNDS },
    );
  } finally {
    bare.close();
    await app.stop();
    await dropKeysWithPrefix(REDIS_URL, config.QUEUE_PREFIX);
    sink.child.kill();
    await database.drop();
  }
}

// ---------- part 2: inbound 250 → acknowledgement at the sink ----------

async function ackLatency(result: BenchResult): Promise<void> {
  const sink = await startSink();
  const database = await createDatabase();
  const config = benchConfig(database.url, sink.url, {
    REPLYLINE_ROLES: 'smtp,worker',
    SMTP_MSG_PER_IP_PER_MIN: '100000',
    SMTP_CONN_PER_IP_PER_MIN: '100000',
  });
  const app = await startApp(config);
  try {
    // Warm-up (JIT, parse workers, pools), not measured.
    const warm = await offerLoad(app.smtp!.port, 'warm', 20, 100);
    await sink.waitCount(warm.accepted.size, 60_000);
    sink.events.length = 0;
    const loadStart = new Date();

    const cpuStart = cpuMs();
    const { accepted, rejected, offered } = await offerLoad(app.smtp!.port, 'load', RATE, RATE * LOAD_SECONDS);
    await sink.waitCount(accepted.size, 300_000).catch((err: Error) => console.warn(err.message));
    const cpuPerMessage = (cpuMs() - cpuStart) / Math.max(1, accepted.size);
    console.log(
      `CPU of this process (load generator, SMTP, processing, acknowledgement) per inbound message: ${round(cpuPerMessage, 3)} ms`,
    );
    result.figures.push({
      label: 'CPU of the process per inbound message (load generator included)',
      value: round(cpuPerMessage, 3),
      unit: 'ms',
    });
    const samples: number[] = [];
    for (const e of sink.events) {
      const t250 = e.irt ? accepted.get(e.irt.toLowerCase()) : undefined;
      if (t250 !== undefined && e.kind === 'auto-replied') samples.push(e.t - t250);
    }
    // Where the time goes: inbound processing (250 → ticket committed) vs outbound (ack row → relay 250).
    const { rows } = await sql<{ inbound: number; outbound: number }>`
      SELECT extract(epoch from (im.processed_at - im.received_at)) * 1000 AS inbound,
             extract(epoch from (o.sent_at - o.created_at)) * 1000 AS outbound
        FROM inbound_messages im JOIN outbound_mails o ON o.ticket_id = im.ticket_id AND o.kind = 'acknowledgement'
       WHERE im.received_at >= ${loadStart}`.execute(app.ctx.db);
    const inboundMs = rows.map((r) => Number(r.inbound));
    const outboundMs = rows.map((r) => Number(r.outbound));
    const { rows: span } = await sql<{ secs: number }>`
      SELECT extract(epoch from max(processed_at) - min(received_at)) AS secs FROM inbound_messages WHERE received_at >= ${loadStart}`.execute(
      app.ctx.db,
    );
    const processedRate = accepted.size / Number(span[0]?.secs ?? NaN);

    const p95 = percentile(samples, 95);
    console.log(
      `offered ${round(offered, 1)} msg/s; accepted ${accepted.size}, rejected ${rejected}; acks at sink ${samples.length}; ` +
        `250→ack p50 ${round(percentile(samples, 50))} ms p95 ${round(p95)} ms; inbound processed at ${round(processedRate, 1)} msg/s; ` +
        `inbound part p50 ${round(percentile(inboundMs, 50))} ms, outbound part p50 ${round(percentile(outboundMs, 50))} p95 ${round(percentile(outboundMs, 95))} ms`,
    );
    result.figures.push(
      { label: 'offered inbound load', value: round(offered, 1), unit: 'msg/s' },
      {
        label: 'acknowledgements received / inbound accepted',
        value: `${samples.length} / ${accepted.size}`,
        target: 'all',
        pass: samples.length === accepted.size && rejected === 0,
      },
      { label: 'inbound 250 → acknowledgement at sink, p50', value: round(percentile(samples, 50)), unit: 'ms' },
      { label: 'inbound 250 → acknowledgement at sink, p95', value: round(p95), unit: 'ms', target: '≤ 2000 ms', pass: p95 <= 2000 },
      { label: 'inbound 250 → acknowledgement at sink, p99', value: round(percentile(samples, 99)), unit: 'ms' },
      {
        label: 'of which inbound processing (250 → ticket committed), p50 / p95',
        value: `${round(percentile(inboundMs, 50))} / ${round(percentile(inboundMs, 95))}`,
        unit: 'ms',
      },
      {
        label: 'of which outbound (ack row committed → relay 250), p50 / p95',
        value: `${round(percentile(outboundMs, 50))} / ${round(percentile(outboundMs, 95))}`,
        unit: 'ms',
      },
      { label: 'inbound processing rate under this load', value: round(processedRate, 1), unit: 'msg/s' },
    );
    result.latency.push({ label: '250 → ack at sink', samplesMs: samples });
  } finally {
    await app.stop();
    await dropKeysWithPrefix(REDIS_URL, config.QUEUE_PREFIX);
    sink.child.kill();
    await database.drop();
  }
}

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

async function main(): Promise<void> {
  const result: BenchResult = { name: 'outbound', title: 'Outbound mail', ratios: [], figures: [], latency: [] };
  if (process.env.BENCH_OUTBOUND_SKIP_THROUGHPUT !== '1') await throughput(result);
  if (process.env.BENCH_OUTBOUND_SKIP_LATENCY !== '1') await ackLatency(result);
  emitResult(result);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
