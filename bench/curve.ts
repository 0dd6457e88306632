// The scaling curve: memory per connection, CPU per push and push p99 against the number of
// clients, one line per server, as an SVG (no dependency: a few lines and labels). The
// benchmark writes it when it ran two or more client counts; the README shows one.
import type { MetricName } from './metrics.ts';
import type { Target } from './options.ts';
import { medianOf, type BenchReport } from './report.ts';

interface Panel {
  metric: MetricName;
  title: string;
  unit: string;
  /** Shown value from the figure (e.g. ms to µs). */
  scale: number;
}

const PANELS: Panel[] = [
  { metric: 'mem_per_conn_kb', title: 'server RSS per connection', unit: 'KiB', scale: 1 },
  { metric: 'cpu_per_push_ms', title: 'server CPU per targeted push', unit: 'µs', scale: 1000 },
  { metric: 'push_p99_ms', title: 'targeted push latency p99', unit: 'ms', scale: 1 },
];

const STYLE: Record<Target, { color: string; name: string; dash: string }> = {
  ours: { color: '#1f6feb', name: 'this server', dash: '' },
  full: { color: '#d97706', name: 'this server, all features on', dash: '6 3' },
  ref: { color: '#6b7280', name: 'bare Socket.IO (reference)', dash: '2 3' },
};

const W = 300;
const H = 220;
const M = { left: 48, right: 12, top: 28, bottom: 40 };

/** A round step for about five ticks up to `max`. */
function step(max: number): number {
  const raw = max / 5;
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

function panel(report: BenchReport, p: Panel, index: number): string {
  const clients = [...report.options.clients].sort((a, b) => a - b);
  const targets = report.options.targets;
  const points = targets.map((t) => ({
    t,
    values: clients.map((n) => {
      const v = medianOf(report.runs, n, t, p.metric);
      return v === null ? null : v * p.scale;
    }),
  }));
  const all = points.flatMap((s) => s.values).filter((v): v is number => v !== null);
  const top = all.length === 0 ? 1 : Math.max(...all);
  const ystep = step(top);
  const ymax = Math.ceil(top / ystep) * ystep || 1;
  // x on a log scale: 1k, 5k, 10k, 20k spread out evenly enough to read
  const lx = (n: number) => Math.log(n);
  const [x0, x1] = [lx(clients[0]!), lx(clients[clients.length - 1]!)];
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const x = (n: number) => M.left + (x1 === x0 ? pw / 2 : ((lx(n) - x0) / (x1 - x0)) * pw);
  const y = (v: number) => M.top + ph - (v / ymax) * ph;
  const out: string[] = [`<g transform="translate(${index * W},0)">`];
  out.push(`<text x="${M.left}" y="16" font-size="12" font-weight="bold">${esc(p.title)} (${p.unit})</text>`);
  for (let v = 0; v <= ymax + 1e-9; v += ystep) {
    out.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e7eb"/>`);
    out.push(`<text x="${M.left - 4}" y="${y(v) + 4}" font-size="10" text-anchor="end">${+v.toFixed(3)}</text>`);
  }
  for (const n of clients) {
    out.push(`<line x1="${x(n)}" x2="${x(n)}" y1="${M.top + ph}" y2="${M.top + ph + 4}" stroke="#374151"/>`);
    out.push(`<text x="${x(n)}" y="${M.top + ph + 15}" font-size="10" text-anchor="middle">${n >= 1000 ? `${n / 1000}k` : n}</text>`);
  }
  out.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${M.top + ph}" y2="${M.top + ph}" stroke="#374151"/>`);
  out.push(`<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + ph}" stroke="#374151"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 8}" font-size="10" text-anchor="middle">clients (log scale)</text>`);
  for (const { t, values } of points) {
    const s = STYLE[t];
    const xy = clients.flatMap((n, i) => (values[i] === null ? [] : [`${x(n).toFixed(1)},${y(values[i]!).toFixed(1)}`]));
    if (xy.length === 0) continue;
    out.push(`<polyline points="${xy.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2" stroke-dasharray="${s.dash}"/>`);
    for (const pt of xy) out.push(`<circle cx="${pt.split(',')[0]}" cy="${pt.split(',')[1]}" r="2.5" fill="${s.color}"/>`);
  }
  out.push('</g>');
  return out.join('\n');
}

/** The SVG of the report's curve, or null when it ran a single client count. */
export function curveSvg(report: BenchReport): string | null {
  if (report.options.clients.length < 2) return null;
  const width = W * PANELS.length;
  const legendY = H + 14;
  const legend = report.options.targets
    .map((t, i) => {
      const s = STYLE[t];
      const lx = 16 + i * 260;
      return `<line x1="${lx}" x2="${lx + 28}" y1="${legendY - 4}" y2="${legendY - 4}" stroke="${s.color}" stroke-width="2" stroke-dasharray="${s.dash}"/><text x="${lx + 34}" y="${legendY}" font-size="11">${esc(s.name)}</text>`;
    })
    .join('\n');
  const caption = `medians of ${report.options.reps} interleaved runs per point; ${report.machine.cpus} CPUs (${esc(report.machine.cpuModel)}) shared by server and load; ${report.date.slice(0, 10)}`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${H + 40}" viewBox="0 0 ${width} ${H + 40}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    ...PANELS.map((p, i) => panel(report, p, i)),
    legend,
    `<text x="16" y="${H + 32}" font-size="10" fill="#4b5563">${caption}</text>`,
    '</svg>',
    '',
  ].join('\n');
}
