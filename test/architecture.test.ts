import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

/**
 * The direction of dependencies between src/ folders (.dependency-cruiser.cjs):
 * portal/cli/inbound → auth → jobs → mail → db → core, never the reverse, and
 * no module cycles. A new import against the direction fails here with the
 * rule and the offending path, before it can turn into a tangle.
 */
const root = fileURLToPath(new URL('..', import.meta.url));
const cli = fileURLToPath(new URL('../node_modules/dependency-cruiser/bin/dependency-cruise.mjs', import.meta.url));

describe('architecture', () => {
  it('src/ keeps its layers: no folder depends on one above it, no module cycles', async () => {
    const run = await promisify(execFile)(process.execPath, [cli, 'src', '--config', '.dependency-cruiser.cjs', '--output-type', 'err'], {
      cwd: root,
    }).then(
      (r) => ({ code: 0, out: r.stdout + r.stderr }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({
        code: err.code ?? 1,
        out: `${err.stdout ?? ''}${err.stderr ?? ''}`,
      }),
    );
    expect(run.out).toMatch(/no dependency violations found \(\d+ modules/);
    expect(run.code, run.out).toBe(0);
  }, 60_000);

  it('SQL lives in src/db: no statement anywhere else in src/ (transactions are fine)', () => {
    const offending = sqlFiles().filter((f) => !SQL_ALLOWLIST.has(f));
    expect(offending, `SQL outside src/db: move each statement into a function in src/db/queries/<table>.ts`).toEqual([]);
  });

  it('the SQL allowlist only shrinks: every file on it still has SQL', () => {
    const withSql = new Set(sqlFiles());
    const done = [...SQL_ALLOWLIST].filter((f) => !withSql.has(f));
    expect(done, 'these files no longer contain SQL: remove them from SQL_ALLOWLIST in test/architecture.test.ts').toEqual([]);
  });
});

/**
 * Files outside src/db that still hold SQL because their statements have not
 * been moved to src/db/queries yet (issue #11). The list may only shrink: a
 * file that loses its last statement fails the second test until it is taken
 * off, and nothing new may be added.
 */
const SQL_ALLOWLIST = new Set<string>([
  // Empty: the inbound pipeline's statements moved to src/db/queries with decide.ts (gather-facts.ts, apply-plans.ts).
]);

/**
 * What counts as a statement: Kysely's query builders on a db or transaction,
 * the sql`` template (and sql<T>``, sql.raw), and SQL text in a string literal.
 * `db.transaction()` is not matched: a transaction is a unit of work, and
 * deciding one belongs to the layer that knows what the work is.
 */
const SQL_PATTERNS = [
  /\b(?:selectFrom|insertInto|updateTable|deleteFrom)\(/,
  /\bsql[<`]|\bsql\.raw\b/,
  /['"`]\s*(?:SELECT|INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s/,
];

/** src/ files outside src/db that contain SQL, as repository-relative paths with forward slashes. */
function sqlFiles(): string[] {
  const src = join(root, 'src');
  return readdirSync(src, { recursive: true, encoding: 'utf8' })
    .map((f) => `src/${f.split('\\').join('/')}`)
    .filter((f) => f.endsWith('.ts') && !f.startsWith('src/db/'))
    .filter((f) => SQL_PATTERNS.some((re) => re.test(readFileSync(join(root, f), 'utf8'))))
    .sort();
}
