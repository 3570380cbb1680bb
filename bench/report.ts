import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BenchResult } from './lib.js';
import { round } from './lib.js';
import { latencyChart } from './svg.js';

/**
 * `npm run bench`: runs every benchmark in turn (never in parallel: they would
 * measure each other) and writes bench/report.md with an SVG chart per bench.
 */
const BENCHES = ['inbound', 'outbound', 'portal'];
const here = path.dirname(new URL(import.meta.url).pathname);
const resultsDir = path.join(here, 'results');
rmSync(resultsDir, { recursive: true, force: true });
mkdirSync(resultsDir, { recursive: true });

const results: BenchResult[] = [];
const failures: string[] = [];
for (const name of BENCHES) {
  const json = path.join(resultsDir, `${name}.json`);
  console.log(`\n### running bench:${name}`);
  const run = spawnSync(process.execPath, ['--import', 'tsx', path.join(here, `${name}.ts`)], {
    stdio: 'inherit',
    env: { ...process.env, BENCH_JSON: json },
  });
  if (run.status !== 0 || !existsSync(json)) {
    failures.push(`bench:${name} exited with ${run.status}`);
    continue;
  }
  results.push(JSON.parse(readFileSync(json, 'utf8')) as BenchResult);
}

const version = (cmd: string, args: string[]) => {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' }).trim().split('\n')[0];
  } catch {
    return 'n/a';
  }
};
const pkg = JSON.parse(readFileSync(path.join(here, '..', 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
const lines: string[] = [
  '# replyline benchmark report',
  '',
  `Generated ${new Date().toISOString()} by \`npm run bench\`.`,
  '',
  '## Machine',
  '',
  `- CPU: ${os.cpus()[0]?.model ?? 'unknown'} × ${os.cpus().length}`,
  `- Memory: ${round(os.totalmem() / 2 ** 30, 1)} GiB; load average at start ${os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
  `- OS: ${os.type()} ${os.release()}`,
  `- Node ${process.version}; PostgreSQL: ${version('psql', ['--version'])}; Redis: ${version('redis-server', ['--version'])}`,
  `- smtp-server ${pkg.dependencies['smtp-server']}, mailparser ${pkg.dependencies.mailparser}, nodemailer ${pkg.dependencies.nodemailer}, bullmq ${pkg.dependencies.bullmq}, kysely ${pkg.dependencies.kysely}, hono ${pkg.dependencies.hono}`,
  '',
  'This machine is shared and noisy: every benchmark measures its own bare baseline in the same run and the ratios against it come first. Absolute figures are context.',
  '',
];
if (failures.length) lines.push('## Failed to run', '', ...failures.map((f) => `- ${f}`), '');
for (const r of results) {
  lines.push(`## ${r.title}`, '', '| ratio | value | target | |', '| --- | --- | --- | --- |');
  for (const x of r.ratios) lines.push(`| ${x.label} | ${round(x.value, 3)} | ${x.target} | ${x.pass ? 'pass' : '**miss**'} |`);
  lines.push('', '| figure | value | target | |', '| --- | --- | --- | --- |');
  for (const f of r.figures)
    lines.push(
      `| ${f.label} | ${f.value}${f.unit ? ` ${f.unit}` : ''} | ${f.target ?? ''} | ${f.target ? (f.pass ? 'pass' : '**miss**') : ''} |`,
    );
  if (r.latency.length) {
    const svg = `${r.name}-latency.svg`;
    writeFileSync(path.join(here, svg), latencyChart(`${r.title}: latency distribution`, r.latency));
    lines.push('', `![${r.title} latency distribution](${svg})`);
  }
  lines.push('');
}
writeFileSync(path.join(here, 'report.md'), lines.join('\n'));
console.log(`\nwrote ${path.join(here, 'report.md')}`);
process.exitCode = failures.length ? 1 : 0;
