import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { sql } from 'kysely';
import pg from 'pg';
import type { RunningApp } from '../src/app.js';
import { hashPassword } from '../src/auth/password.js';
import { loadConfig } from '../src/config.js';
import { createDb, type Db } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { compiledStartApp, emitResult, percentile, round, type BenchResult } from './lib.js';
import { dropKeysWithPrefix } from '../test/support/redis.js';
import { freePort } from '../test/support/net.js';

const startApp = await compiledStartApp();

/**
 * npm run bench:portal
 *
 * Seeds 100,000 tickets (generate_series) with a signed-in customer who has
 * 500 of them, and a copy grown to 1,000,000 tickets; measures GET /requests
 * and GET /requests/:id, and search in My activity (a customer's and staff's,
 * through the trigram indexes and, for two characters, without), p50/p95
 * against GET /healthz on both, all requests
 * interleaved in one loop so machine noise hits every series alike.
 * Targets: p95 within 5× of /healthz, and growth from 100k to 1M of at most 1.5×.
 * BENCH_PORTAL_SIZES=small,large and BENCH_PORTAL_SAMPLES override the defaults.
 */
const SERVER_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const SIZES = (process.env.BENCH_PORTAL_SIZES ?? '100000,1000000').split(',').map(Number);
const SAMPLES = Number(process.env.BENCH_PORTAL_SAMPLES ?? 1500);
const WARMUP = 200;
const USERS = 20_000;
const MY_TICKETS = 500;
const PASSWORD = 'Bench-Password-1';
/**
 * Search: the first message of every INVOICE_EVERY-th ticket, and of every
 * 2000th (10 % of the bench user's), mentions 請求書 ("invoice"): a rare term
 * whose matches grow with the table, as real ones do.
 */
const INVOICE_EVERY = 997;
const INVOICE = encodeURIComponent('請求書');
/** Two characters: no trigram, so no index; the walk over the viewer's own requests. */
const INVOICE_SHORT = encodeURIComponent('請求');
/** 見積書 ("quotation") is in 100 tickets among the first 100k only: the same matches at both sizes. */
const QUOTE = encodeURIComponent('見積書');
/** Samples of the slow path (a rare two-character term over every ticket), measured apart from the main loop. */
const SLOW_SAMPLES = Number(process.env.BENCH_PORTAL_SLOW_SAMPLES ?? 5);

/** Adds tickets with ids (from, to]; every `stride`-th of the first 100k belongs to the bench user. */
async function seedTickets(
  db: Db,
  from: number,
  to: number,
  me: number,
  staff: number,
  firstBulkUser: number,
  stride: number,
): Promise<void> {
  const chunk = 100_000;
  for (let lo = from + 1; lo <= to; lo += chunk) {
    const hi = Math.min(to, lo + chunk - 1);
    await sql`
      INSERT INTO tickets (id, subject, status, requester_id, created_at, updated_at)
      SELECT g,
             'Bench request ' || g,
             (ARRAY['new','open','pending','solved','closed'])[1 + g % 5],
             CASE WHEN g <= 100000 AND g % ${stride} = 0 THEN ${me}::bigint ELSE ${firstBulkUser}::bigint + (g * 7919) % ${USERS} END,
             now() - (g * 37 % 500000) * interval '1 minute',
             now() - (g * 37 % 500000) * interval '1 minute' + interval '5 minutes'
      FROM generate_series(${lo}::bigint, ${hi}::bigint) g`.execute(db);
    await sql`
      INSERT INTO ticket_participants (ticket_id, user_id, role)
      SELECT id, requester_id, 'requester' FROM tickets WHERE id BETWEEN ${lo} AND ${hi}`.execute(db);
    // Some tickets carry a CC; the bench user is CC on a hundred others' tickets.
    await sql`
      INSERT INTO ticket_participants (ticket_id, user_id, role)
      SELECT id, CASE WHEN id <= 100000 AND id % 1000 = 7 THEN ${me}::bigint ELSE ${firstBulkUser}::bigint + (id * 104729 + 1) % ${USERS} END, 'cc'
      FROM tickets WHERE id BETWEEN ${lo} AND ${hi} AND id % 10 = 7
      ON CONFLICT DO NOTHING`.execute(db);
    await sql`
      INSERT INTO messages (ticket_id, author_id, visibility, via, body_text, created_at)
      SELECT id, requester_id, 'public', 'email',
             CASE WHEN id % ${INVOICE_EVERY} = 0 OR id % 2000 = 0 THEN 'お世話になっております。先月の請求書が届いていません。' ELSE '' END
               || CASE WHEN id <= 100000 AND id % 1000 = 500 THEN '見積書をお送りください。' ELSE '' END
               || repeat('Bench message body for request ' || id || '. ', 6),
             created_at
      FROM tickets WHERE id BETWEEN ${lo} AND ${hi}`.execute(db);
    // A staff reply on every other ticket, an internal note on every tenth.
    await sql`
      INSERT INTO messages (ticket_id, author_id, visibility, via, body_text, body_html, created_at)
      SELECT id, ${staff}::bigint, CASE WHEN id % 10 = 4 THEN 'internal' ELSE 'public' END, 'email',
             'Thanks, we are looking into it.', '<p>Thanks, we are <b>looking into it</b>.</p>', created_at + interval '1 minute'
      FROM tickets WHERE id BETWEEN ${lo} AND ${hi} AND id % 2 = 0`.execute(db);
    process.stdout.write(`  seeded ${hi.toLocaleString('en')} tickets\r`);
  }
  await sql`SELECT setval('tickets_id_seq', ${to})`.execute(db);
  process.stdout.write('\n');
}

class Session {
  cookie = '';
  constructor(readonly base: string) {}
  async get(path: string): Promise<Response> {
    return fetch(this.base + path, { headers: { cookie: this.cookie }, redirect: 'manual' });
  }
  async login(email: string): Promise<void> {
    const page = await this.get('/login');
    this.cookie = page.headers
      .getSetCookie()
      .map((c) => c.split(';')[0])
      .join('; ');
    const csrf = /name="_csrf" value="([^"]+)"/.exec(await page.text())![1]!;
    const res = await fetch(`${this.base}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: this.cookie, origin: this.base, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ email, password: PASSWORD, _csrf: csrf }).toString(),
    });
    const session = res.headers.getSetCookie().find((c) => c.startsWith('rl_session='));
    if (res.status !== 303 || !session) throw new Error(`bench login failed: ${res.status}`);
    this.cookie = session.split(';')[0]!;
  }
}

async function measure(
  targets: Array<{ prefix: string; session: Session; paths: Record<string, string> }>,
  warmup = WARMUP,
  count = SAMPLES,
): Promise<Record<string, number[]>> {
  const samples: Record<string, number[]> = {};
  for (const t of targets) for (const label of Object.keys(t.paths)) samples[`${t.prefix}${label}`] = [];
  for (let i = 0; i < warmup + count; i++) {
    for (const t of targets) {
      for (const [label, path] of Object.entries(t.paths)) {
        const t0 = performance.now();
        const res = await t.session.get(path);
        await res.arrayBuffer();
        const ms = performance.now() - t0;
        if (res.status !== 200) throw new Error(`${path} answered ${res.status}`);
        if (i >= warmup) samples[`${t.prefix}${label}`]!.push(ms);
      }
    }
  }
  return samples;
}

interface Seeded {
  me: number;
  staff: number;
  firstBulkUser: number;
}

async function seedBase(db: Db): Promise<Seeded> {
  const hash = await hashPassword(PASSWORD);
  const me = await db
    .insertInto('users')
    .values({ email: 'me@bench.test', name: 'Bench Customer', password_hash: hash })
    .returning('id')
    .executeTakeFirstOrThrow();
  const staff = await db
    .insertInto('users')
    .values({ email: 'agent@bench.test', name: 'Agent', role: 'staff', password_hash: hash })
    .returning('id')
    .executeTakeFirstOrThrow();
  const bulk = await sql<{ first: number }>`
    INSERT INTO users (email, name) SELECT 'bench-' || g || '@bench.test', 'Bench ' || g FROM generate_series(1, ${USERS}) g
    RETURNING id AS first`.execute(db);
  return { me: me.id, staff: staff.id, firstBulkUser: Math.min(...bulk.rows.map((r) => Number(r.first))) };
}

async function grow(db: Db, seeded: Seeded, from: number, to: number): Promise<void> {
  console.log(`seeding ${from.toLocaleString('en')} → ${to.toLocaleString('en')} tickets…`);
  const t0 = performance.now();
  await seedTickets(db, from, to, seeded.me, seeded.staff, seeded.firstBulkUser, Math.floor(100_000 / MY_TICKETS));
  await sql`VACUUM ANALYZE`.execute(db);
  await sql`CHECKPOINT`.execute(db);
  console.log(`  ${round((performance.now() - t0) / 1000, 1)} s`);
}

function appConfig(databaseUrl: string, port: number) {
  return loadConfig({
    DATABASE_URL: databaseUrl,
    REDIS_URL,
    REPLYLINE_ROLES: 'portal',
    HTTP_LISTEN: `127.0.0.1:${port}`,
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    SUPPORT_ADDRESSES: 'support@help.test',
    SECRET_KEY: 'bench-secret-key-0123456789abcdef0123456789',
    QUEUE_PREFIX: `rlbench_portal_${randomBytes(3).toString('hex')}`,
    LOG_LEVEL: 'warn',
  });
}

/**
 * Two databases, one per size (the larger cloned from the smaller, then
 * grown), each behind its own portal, measured in one interleaved loop: the
 * growth ratio compares the sizes under the very same machine noise.
 */
async function main(): Promise<void> {
  const [small, large] = SIZES.length === 2 ? (SIZES as [number, number]) : [100_000, 1_000_000];
  const tag = randomBytes(3).toString('hex');
  const names = [`replyline_bench_portal_${tag}_s`, `replyline_bench_portal_${tag}_l`];
  const urlOf = (name: string) => {
    const u = new URL(SERVER_URL);
    u.pathname = `/${name}`;
    return u.toString();
  };
  const admin = new pg.Client({ connectionString: SERVER_URL });
  await admin.connect();
  const apps: RunningApp[] = [];
  try {
    await admin.query(`CREATE DATABASE ${names[0]}`);
    const seedDb = createDb(urlOf(names[0]!), 2);
    await migrateToLatest(seedDb);
    const seeded = await seedBase(seedDb);
    await grow(seedDb, seeded, 0, small);
    await seedDb.destroy();
    await admin.query(`CREATE DATABASE ${names[1]} TEMPLATE ${names[0]}`);
    const largeDb = createDb(urlOf(names[1]!), 2);
    await grow(largeDb, seeded, small, large);
    await largeDb.destroy();

    const targets = [];
    const slow = [];
    for (const [i, name] of names.entries()) {
      const port = await freePort();
      const app = await startApp(appConfig(urlOf(name), port));
      apps.push(app);
      const db = app.ctx.db;
      const mine = await db
        .selectFrom('tickets')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('requester_id', '=', seeded.me)
        .executeTakeFirstOrThrow();
      const size = i === 0 ? small : large;
      const expected = Math.min(MY_TICKETS, Math.floor(Math.min(size, 100_000) / Math.floor(100_000 / MY_TICKETS)));
      if (Number(mine.n) !== expected) throw new Error(`bench user has ${mine.n} tickets, expected ${expected}`);
      // The bench user's ticket ids are multiples of 200, so each has a public staff reply.
      const thread = await db
        .selectFrom('tickets')
        .select('id')
        .where('requester_id', '=', seeded.me)
        .orderBy('id')
        .executeTakeFirstOrThrow();
      const base = `http://127.0.0.1:${port}`;
      const customer = new Session(base);
      await customer.login('me@bench.test');
      const agent = new Session(base);
      await agent.login('agent@bench.test');
      const prefix = i === 0 ? 'small.' : 'large.';
      // Search must find something, or the bench would time an empty answer.
      for (const [who, path] of [
        [customer, `/requests?q=${INVOICE}`],
        [customer, `/requests?q=${INVOICE_SHORT}`],
        [agent, `/requests?filter=all&q=${INVOICE}`],
        [agent, `/requests?filter=all&q=${QUOTE}`],
      ] as const) {
        const html = await (await who.get(path)).text();
        if (!/href="[^"]*\/requests\/\d+"/.test(html)) throw new Error(`${path} found nothing`);
      }
      targets.push({
        prefix,
        session: customer,
        paths: {
          healthz: '/healthz',
          requests: '/requests',
          request: `/requests/${thread.id}`,
          ccTab: '/requests?filter=cc',
          search: `/requests?q=${INVOICE}`,
          searchShort: `/requests?q=${INVOICE_SHORT}`,
        },
      });
      targets.push({
        prefix,
        session: agent,
        paths: {
          staffAll: '/requests?filter=all',
          staffSearch: `/requests?filter=all&q=${INVOICE}`,
          staffSearchFixed: `/requests?filter=all&q=${QUOTE}`,
        },
      });
      slow.push({ prefix, session: agent, paths: { staffSearchShort: `/requests?filter=all&q=${INVOICE_SHORT}` } });
    }
    console.log(`measuring ${SAMPLES} interleaved samples per endpoint and size…`);
    const samples = await measure(targets);
    console.log(`measuring the unindexed path: ${SLOW_SAMPLES} samples per size…`);
    const slowSamples = await measure(slow, 1, SLOW_SAMPLES);
    const p = (key: string, q: number) => percentile(samples[key]!, q);
    const sizeLabel = (n: number) => (n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1000}k`);
    const labels = { small: sizeLabel(small), large: sizeLabel(large) };
    const endpoints = {
      requests: 'GET /requests',
      request: 'GET /requests/:id',
      search: 'search 請求書 (my 500 requests, checked row by row)',
      searchShort: 'search 請求 (my 500 requests, 2 characters)',
      staffSearch: 'search 請求書 (staff, all requests, trigram index; matches grow with the table)',
      staffSearchFixed: 'search 見積書 (staff, all requests, trigram index; 100 matches at both sizes)',
    } as const;

    const result: BenchResult = {
      name: 'portal',
      title: `Portal: GET /requests, GET /requests/:id and search against GET /healthz (${labels.small} and ${labels.large} tickets)`,
      ratios: [],
      figures: [],
      latency: [],
    };
    for (const size of ['small', 'large'] as const) {
      for (const [key, name] of Object.entries(endpoints)) {
        const value = p(`${size}.${key}`, 95) / p(`${size}.healthz`, 95);
        result.ratios.push({ label: `${labels[size]}: p95 ${name} / p95 /healthz`, value, target: '≤ 5', pass: value <= 5 });
      }
    }
    for (const [key, name] of Object.entries(endpoints)) {
      const value = p(`large.${key}`, 95) / p(`small.${key}`, 95);
      result.ratios.push({ label: `p95 growth ${labels.small} → ${labels.large}, ${name}`, value, target: '≤ 1.5', pass: value <= 1.5 });
    }
    for (const size of ['small', 'large'] as const) {
      for (const key of [
        'healthz',
        'requests',
        'request',
        'ccTab',
        'staffAll',
        'search',
        'searchShort',
        'staffSearch',
        'staffSearchFixed',
      ]) {
        result.figures.push({ label: `${labels[size]} ${key} p50`, value: round(p(`${size}.${key}`, 50)), unit: 'ms' });
        result.figures.push({ label: `${labels[size]} ${key} p95`, value: round(p(`${size}.${key}`, 95)), unit: 'ms' });
      }
    }
    for (const size of ['small', 'large'] as const) {
      const slowP50 = percentile(slowSamples[`${size}.staffSearchShort`]!, 50);
      result.figures.push({
        label: `${labels[size]} staff search 請求 over all requests (2 characters, no index; ${SLOW_SAMPLES} samples) p50`,
        value: round(slowP50),
        unit: `ms (${round(slowP50 / p(`${size}.healthz`, 50), 1)} × healthz p50)`,
      });
    }
    result.figures.push({
      label: 'healthz p95 drift large/small (noise check; ≈1 means a fair comparison)',
      value: round(p('large.healthz', 95) / p('small.healthz', 95)),
    });
    result.latency = ['healthz', 'requests', 'request', 'search', 'staffSearch', 'staffSearchFixed'].map((key) => ({
      label: `${labels.large} ${key}`,
      samplesMs: samples[`large.${key}`]!,
    }));
    emitResult(result);
  } finally {
    for (const app of apps) {
      await app.stop();
      await dropKeysWithPrefix(REDIS_URL, app.ctx.config.QUEUE_PREFIX);
    }
    for (const name of names) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
