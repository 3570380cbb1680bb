import { sql } from 'kysely';
import type { Db } from './database.js';

/**
 * One transaction on one reserved connection, with its first and last
 * statements sent in the same protocol message as BEGIN and COMMIT. Kysely's
 * transaction() sends BEGIN and COMMIT on their own, and on a small machine
 * each round trip's syscalls cost more than the statements: the outbound
 * delivery batch is three round trips this way (BEGIN + recipient locks, the
 * rows with their context, the `sent` mark + COMMIT) instead of five.
 * `first` and the body's `last` are SQL text built by src/db/queries
 * functions from validated integers only (simple protocol, no parameters).
 * `durable: false` lets the commit return before its WAL flush.
 */
export async function pipelinedTransaction<T>(
  db: Db,
  opts: { first: string; durable: boolean },
  body: (conn: Db) => Promise<{ value: T; last: string }>,
): Promise<T> {
  return db.connection().execute(async (conn) => {
    let open = true;
    try {
      const relax = opts.durable ? '' : 'SET LOCAL synchronous_commit = off; ';
      await sql.raw(`BEGIN; ${relax}${opts.first}`).execute(conn);
      const { value, last } = await body(conn);
      await sql.raw(`${last}COMMIT`).execute(conn);
      open = false;
      return value;
    } catch (err) {
      if (open)
        await sql
          .raw('ROLLBACK')
          .execute(conn)
          .catch(() => {});
      throw err;
    }
  });
}
