/**
 * Resolves like `promise`, or rejects after `ms`. The underlying work is not
 * cancelled; callers use this where waiting longer is worse than giving up
 * (Redis calls that block until a connection that may never come).
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  promise.catch(() => {}); // a late rejection after the timeout must not go unhandled
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
