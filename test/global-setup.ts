import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { createDb } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { dropKeysWithPrefix } from './support/redis.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Server URL (no database name) on which each test file clones its own database. */
    pgServerUrl: string;
    /** A migrated database that test files clone with CREATE DATABASE … TEMPLATE. */
    templateDb: string;
    redisUrl: string;
    /** This run's queue prefix; each test file appends its own suffix. */
    runPrefix: string;
  }
}

const stops: Array<() => Promise<unknown>> = [];

async function fromEnvOrContainers(): Promise<{ databaseUrl: string; redisUrl: string }> {
  const { DATABASE_URL, REDIS_URL } = process.env;
  if (DATABASE_URL && REDIS_URL) return { databaseUrl: DATABASE_URL, redisUrl: REDIS_URL };
  try {
    const [{ PostgreSqlContainer }, { RedisContainer }] = await Promise.all([
      import('@testcontainers/postgresql'),
      import('@testcontainers/redis'),
    ]);
    const pgC = DATABASE_URL ? null : await new PostgreSqlContainer('postgres:17-alpine').start();
    const redisC = REDIS_URL
      ? null
      : await new RedisContainer('redis:7-alpine').withCommand(['redis-server', '--maxmemory-policy', 'noeviction']).start();
    if (pgC) stops.push(() => pgC.stop());
    if (redisC) stops.push(() => redisC.stop());
    return { databaseUrl: DATABASE_URL ?? pgC!.getConnectionUri(), redisUrl: REDIS_URL ?? redisC!.getConnectionUrl() };
  } catch (err) {
    throw new Error(
      'Tests need PostgreSQL and Redis. Set DATABASE_URL and REDIS_URL (e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres ' +
        'REDIS_URL=redis://127.0.0.1:6379), or run a Docker engine so testcontainers can start them. ' +
        `testcontainers said: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`,
      { cause: err },
    );
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const { databaseUrl, redisUrl } = await fromEnvOrContainers();
  const runId = `${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const templateDb = `replyline_test_${runId}`;
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${templateDb}`);
  const serverUrl = new URL(databaseUrl);
  const templateUrl = new URL(databaseUrl);
  templateUrl.pathname = `/${templateDb}`;
  const db = createDb(templateUrl.toString(), 1);
  await migrateToLatest(db);
  await db.destroy();

  const runPrefix = `rltest_${runId}`;
  project.provide('pgServerUrl', serverUrl.toString());
  project.provide('templateDb', templateDb);
  project.provide('redisUrl', redisUrl);
  project.provide('runPrefix', runPrefix);

  return async () => {
    // replyline processes that outlived a crashed or timed-out test worker.
    spawnSync('pkill', ['-9', '-f', `--replyline-test-run=${runPrefix}`]);
    // Per-file databases are dropped by their files; catch any a crashed file left.
    const { rows } = await admin.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE $1`, [`${templateDb}%`]);
    for (const { datname } of rows) await admin.query(`DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`);
    await admin.end();
    await dropKeysWithPrefix(redisUrl, runPrefix);
    for (const stop of stops) await stop();
  };
}
