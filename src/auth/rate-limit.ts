import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { Config } from '../config.js';
import { sha256 } from '../core/secrets.js';

/**
 * Brute-force limits for the portal's unauthenticated forms, per client IP
 * and per account (the address typed, known or not, so the limit itself
 * never tells whether an account exists). Counters live in Redis so every
 * portal process shares them; while Redis is unreachable each process falls
 * back to an in-memory limiter with the same rules instead of failing the request.
 */
export type LimitName = 'login' | 'password';

export interface PortalLimiters {
  /** Consumes one attempt on every key; false when any of them is over its limit. */
  attempt(name: LimitName, keys: { ip: string; account?: string | null }): Promise<boolean>;
  /**
   * Whether any key is already over its limit, without consuming an attempt. For forms where only
   * failures count (a mailed link's token check): once limited, even a right guess gets the 429.
   */
  blocked(name: LimitName, keys: { ip: string; account?: string | null }): Promise<boolean>;
  /** Forgets an account's failed attempts (after a successful sign-in). */
  resetAccount(name: LimitName, account: string): Promise<void>;
}

type LimitConfig = Pick<
  Config,
  'QUEUE_PREFIX' | 'RATE_LOGIN_PER_IP' | 'RATE_LOGIN_PER_ACCOUNT' | 'RATE_PASSWORD_PER_IP' | 'RATE_PASSWORD_PER_ACCOUNT'
>;

const WINDOW_S: Record<LimitName, number> = { login: 15 * 60, password: 60 * 60 };

function limiter(redis: Redis, keyPrefix: string, points: number, duration: number): RateLimiterRedis {
  return new RateLimiterRedis({
    storeClient: redis,
    keyPrefix,
    points,
    duration,
    // The producer connection has no offline queue; go straight to the
    // insurance limiter instead of waiting for a reconnect.
    rejectIfRedisNotReady: true,
    insuranceLimiter: new RateLimiterMemory({ keyPrefix, points, duration }),
  });
}

/** Account keys are hashed: addresses typed by strangers have no business in Redis in clear. */
function accountKey(account: string): string {
  return sha256(account.trim().toLowerCase()).toString('hex').slice(0, 32);
}

export function createPortalLimiters(redis: Redis, config: LimitConfig): PortalLimiters {
  const prefix = `${config.QUEUE_PREFIX}:portal-rl`;
  const limits = {
    login: {
      ip: limiter(redis, `${prefix}:login:ip`, config.RATE_LOGIN_PER_IP, WINDOW_S.login),
      account: limiter(redis, `${prefix}:login:acct`, config.RATE_LOGIN_PER_ACCOUNT, WINDOW_S.login),
    },
    password: {
      ip: limiter(redis, `${prefix}:password:ip`, config.RATE_PASSWORD_PER_IP, WINDOW_S.password),
      account: limiter(redis, `${prefix}:password:acct`, config.RATE_PASSWORD_PER_ACCOUNT, WINDOW_S.password),
    },
  };

  const consume = async (l: RateLimiterRedis, key: string): Promise<boolean> => {
    try {
      await l.consume(key);
      return true;
    } catch (err) {
      if (err instanceof RateLimiterRes) return false;
      // Both Redis and the insurance limiter failed: refusing every login
      // would be an outage, so let the attempt through (argon2 still slows it).
      return true;
    }
  };

  const over = async (l: RateLimiterRedis, key: string): Promise<boolean> => {
    try {
      const res = await l.get(key);
      return res !== null && res.consumedPoints >= l.points;
    } catch {
      return false; // as in consume(): an unreachable store must not refuse everyone
    }
  };

  return {
    async blocked(name, keys) {
      const l = limits[name];
      const results = await Promise.all([over(l.ip, keys.ip), keys.account ? over(l.account, accountKey(keys.account)) : false]);
      return results.some(Boolean);
    },
    async attempt(name, keys) {
      const l = limits[name];
      const results = await Promise.all([
        consume(l.ip, keys.ip),
        keys.account ? consume(l.account, accountKey(keys.account)) : Promise.resolve(true),
      ]);
      return results.every(Boolean);
    },
    async resetAccount(name, account) {
      await limits[name].account.delete(accountKey(account)).catch(() => undefined);
    },
  };
}
