import pg from 'pg';

/**
 * A pg Client that runs SQL starting with a `/* prepare:NAME *\/` comment as
 * a named prepared statement: parsed and planned once per connection, then
 * only bound and executed. For hot statements with joins and subqueries the
 * planner costs far more than the execution (the outbound mail context:
 * ~1.5 ms planning vs ~0.15 ms execution). Kysely passes plain SQL strings
 * to the pool, so the marker comment is how a query opts in.
 * Marked statements must list their columns (no `*`): a prepared plan whose
 * result shape changes under a migration fails instead of re-planning.
 */
const MARK = /^\/\* prepare:([\w.-]{1,60}) \*\//;

export class PreparingClient extends pg.Client {}

const baseQuery = pg.Client.prototype.query as (...args: unknown[]) => unknown;
(PreparingClient.prototype as unknown as { query: (...args: unknown[]) => unknown }).query = function (
  this: pg.Client,
  ...args: unknown[]
) {
  const [text, values, callback] = args;
  if (typeof text === 'string') {
    const name = MARK.exec(text)?.[1];
    if (name)
      return baseQuery.call(
        this,
        { name, text, values: Array.isArray(values) ? values : [] },
        typeof values === 'function' ? values : callback,
      );
  }
  return baseQuery.apply(this, args);
};

/** Prefixes SQL so PreparingClient prepares it under `name`. */
export function preparedName(name: string): string {
  return `/* prepare:${name} */`;
}
