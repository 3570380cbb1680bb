import { execFile } from 'node:child_process';
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
});
