import { percentile } from './lib.js';

const escape = (s: string) => s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);

/**
 * A latency distribution chart as plain SVG: for each series, the percentile
 * curve (p0…p100) on a log-scaled ms axis. Percentile curves compare series of
 * different sizes fairly and show the tail, which is what the targets are about.
 */
export function latencyChart(title: string, series: Array<{ label: string; samplesMs: number[] }>): string {
  const W = 720;
  const H = 360;
  const m = { l: 70, r: 20, t: 40, b: 50 };
  const colours = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
  const all = series.flatMap((s) => s.samplesMs).filter((v) => v > 0);
  const lo = Math.max(0.01, Math.min(...all));
  const hi = Math.max(...all, lo * 10);
  const logLo = Math.floor(Math.log10(lo));
  const logHi = Math.ceil(Math.log10(hi));
  const x = (p: number) => m.l + (p / 100) * (W - m.l - m.r);
  const y = (v: number) => {
    const t = (Math.log10(Math.max(v, 10 ** logLo)) - logLo) / (logHi - logLo || 1);
    return H - m.b - t * (H - m.t - m.b);
  };
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${escape(title)}</text>`,
  ];
  for (let e = logLo; e <= logHi; e++) {
    const yy = y(10 ** e);
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${yy}" y2="${yy}" stroke="#ddd"/>`);
    parts.push(`<text x="${m.l - 6}" y="${yy + 4}" text-anchor="end">${10 ** e >= 1 ? 10 ** e : (10 ** e).toFixed(-e)} ms</text>`);
  }
  for (const p of [0, 25, 50, 75, 90, 99]) {
    parts.push(`<line x1="${x(p)}" x2="${x(p)}" y1="${m.t}" y2="${H - m.b}" stroke="#eee"/>`);
    parts.push(`<text x="${x(p)}" y="${H - m.b + 16}" text-anchor="middle">p${p}</text>`);
  }
  parts.push(`<text x="${W / 2}" y="${H - 12}" text-anchor="middle">percentile</text>`);
  series.forEach((s, i) => {
    if (s.samplesMs.length === 0) return;
    const pts: string[] = [];
    for (let p = 0; p <= 100; p += 0.5) pts.push(`${x(p).toFixed(1)},${y(percentile(s.samplesMs, p)).toFixed(1)}`);
    const c = colours[i % colours.length];
    parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts.join(' ')}"/>`);
    parts.push(`<rect x="${m.l + 10}" y="${m.t + 8 + i * 18}" width="12" height="12" fill="${c}"/>`);
    parts.push(
      `<text x="${m.l + 28}" y="${m.t + 18 + i * 18}">${escape(s.label)} (n=${s.samplesMs.length}, p50 ${percentile(s.samplesMs, 50).toFixed(2)} ms, p99 ${percentile(s.samplesMs, 99).toFixed(2)} ms)</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}
