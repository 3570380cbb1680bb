import { availableParallelism } from 'node:os';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { DnsResolver } from 'mailauth';
import type { Config } from './config.js';
import { createDb, type Db } from './db/database.js';
import { ensureInstallationId } from './db/queries/installation.js';
import type { QueueName } from './jobs/define-job.js';
import { ParsePool } from './jobs/inbound/parse-pool.js';
import { createLogger, type Logger } from './log.js';
import { createDnsResolver } from './mail/sender-auth.js';
import { createTransport, type Transport } from './mail/transport.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createProducerRedis } from './redis.js';

/** Everything a handler needs, built once per process and passed explicitly. */
export interface AppContext {
  config: Config;
  db: Db;
  log: Logger;
  /** Producer connection: fails fast while Redis is down. */
  redis: Redis;
  queues: Record<QueueName, Queue>;
  metrics: Metrics;
  /** Scopes BullMQ job ids to this database (src/jobs/job-ids.ts); set by loadInstallation once the schema is current. */
  installationId: string;
  /** Parser threads for inbound mail; started on first use, so contexts that never parse (CLI, portal) start none. */
  parsePool: ParsePool;
  /** DNS for SPF/DKIM/DMARC: the system's resolver, or DNS_SERVERS. */
  dns: DnsResolver;
  /** The pooled SMTP client to OUTBOUND_SMTP_URL; connects on the first mail. */
  transport: Transport;
}

const DEFAULT_JOB_OPTIONS = {
  attempts: 8,
  backoff: { type: 'exponential', delay: 2_000 },
  removeOnComplete: { age: 3600, count: 10_000 },
  removeOnFail: { age: 7 * 24 * 3600 },
} as const;

export function createContext(config: Config, log: Logger = createLogger(config.LOG_LEVEL)): AppContext {
  const db = createDb(config.DATABASE_URL, config.DATABASE_POOL_SIZE);
  const redis = createProducerRedis(config.REDIS_URL);
  const queue = (name: QueueName) => {
    const q = new Queue(name, { connection: redis, prefix: config.QUEUE_PREFIX, defaultJobOptions: DEFAULT_JOB_OPTIONS });
    // BullMQ re-emits connection failures on the queue; an 'error' event nobody listens to
    // becomes an unhandled rejection (seen when Redis was down from start to shutdown).
    // The producer's own listener and /healthz already report the outage.
    q.on('error', (err) => log.debug({ queue: name, err: err.message }, 'queue connection error'));
    return q;
  };
  const queues = { inbound: queue('inbound'), outbound: queue('outbound') };
  // One parser thread per core beyond the main thread (which runs SMTP, the jobs' database
  // work and the outbound sender), and never more than the job concurrency.
  const parsePool = new ParsePool(Math.max(1, Math.min(config.INBOUND_CONCURRENCY, availableParallelism() - 1)));
  return {
    config,
    db,
    log,
    redis,
    queues,
    metrics: createMetrics({ db, queues, countCacheMs: config.METRICS_CACHE_MS }),
    installationId: '',
    parsePool,
    dns: createDnsResolver(config),
    transport: createTransport(config),
  };
}

/** Reads (or on first start creates) the installation id; needs the migrated schema. Until then no job can be enqueued. */
export async function loadInstallation(ctx: AppContext): Promise<void> {
  ctx.installationId = await ensureInstallationId(ctx.db);
}

export async function closeContext(ctx: AppContext): Promise<void> {
  await ctx.parsePool.close();
  ctx.transport.close();
  await Promise.allSettled([ctx.queues.inbound.close(), ctx.queues.outbound.close()]);
  ctx.redis.disconnect();
  await ctx.db.destroy();
}
