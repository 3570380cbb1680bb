import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { startApp as StartApp } from '../src/app.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

/** `npm run build`: the benchmarks run under tsx themselves, and the code they measure must not. */
export function buildDist(): void {
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
}

/** replyline as it is deployed: the compiled app, freshly built. */
export async function compiledStartApp(): Promise<typeof StartApp> {
  buildDist();
  const mod = (await import(pathToFileURL(path.join(root, 'dist/src/app.js')).href)) as { startApp: typeof StartApp };
  return mod.startApp;
}

/**
 * The shape every benchmark writes when BENCH_JSON is set, so `npm run bench`
 * can build one report. Ratios against a baseline measured in the same run come
 * first: this machine is shared and noisy, absolute numbers are context only.
 */
export interface BenchResult {
  name: string;
  title: string;
  ratios: Array<{ label: string; value: number; target: string; pass: boolean }>;
  figures: Array<{ label: string; value: number | string; unit?: string; target?: string; pass?: boolean }>;
  /** Latency samples in ms, one series per label, for the distribution chart. */
  latency: Array<{ label: string; samplesMs: number[] }>;
}

export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

export function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Prints the result for a human and, when BENCH_JSON names a file, writes it there for the report. */
export function emitResult(result: BenchResult): void {
  console.log(`\n== ${result.title}`);
  for (const r of result.ratios) console.log(`ratio  ${r.label}: ${round(r.value, 3)} (target ${r.target}) ${r.pass ? 'PASS' : 'MISS'}`);
  for (const f of result.figures) {
    const target = f.target ? ` (target ${f.target}) ${f.pass ? 'PASS' : 'MISS'}` : '';
    console.log(`figure ${f.label}: ${f.value}${f.unit ? ` ${f.unit}` : ''}${target}`);
  }
  const out = process.env.BENCH_JSON;
  if (out) {
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(result));
  }
}
