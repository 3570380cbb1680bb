import type { Db } from '../../src/db/database.js';

/** The db, with its first `n` transactions failing at commit time (a serialization failure, a lost connection). */
export function failingTransactions(db: Db, n: number): Db {
  let left = n;
  return new Proxy(db, {
    get(target, prop) {
      if (prop !== 'transaction') {
        // Kysely keeps its state in private fields: methods must run on the real instance.
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      }
      return () => {
        const builder = target.transaction();
        if (left <= 0) return builder;
        left--;
        return {
          execute: async (fn: (trx: unknown) => Promise<unknown>) =>
            builder.execute(async (trx) => {
              await fn(trx);
              throw new Error('simulated commit failure');
            }),
        };
      };
    },
  });
}
