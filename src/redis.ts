import { Redis, type RedisOptions } from 'ioredis';
import { AppError } from './errors.js';

/**
 * Producers (the SMTP edge, the portal) must fail fast while Redis is down,
 * never queue commands in memory: acceptance does not depend on Redis, and a
 * sweeper re-enqueues whatever could not be queued.
 */
export function createProducerRedis(url: string, extra: RedisOptions = {}): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    lazyConnect: false,
    ...extra,
  });
  redis.on('error', () => {}); // reconnects by itself; health checks report the outage
  return redis;
}

/** Workers block on Redis; BullMQ requires maxRetriesPerRequest: null for them. */
export function createWorkerRedis(url: string): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: false });
  redis.on('error', () => {});
  return redis;
}

/** BullMQ silently loses jobs under any eviction policy but noeviction. */
export async function assertNoEviction(redis: Redis): Promise<void> {
  const info = await redis.info('memory');
  const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
  if (policy && policy !== 'noeviction') {
    throw new AppError(
      'REDIS_EVICTION_POLICY',
      `Redis maxmemory-policy is "${policy}"; replyline needs "noeviction" or queued jobs can be evicted and mail lost. ` +
        `Set it with: redis-cli CONFIG SET maxmemory-policy noeviction (and in redis.conf).`,
    );
  }
}

export async function waitForReady(redis: Redis, timeoutMs = 10_000): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`Redis not ready after ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      redis.off('ready', onReady);
    };
    redis.on('ready', onReady);
  });
}
