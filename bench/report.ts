// The benchmark's output: medians per server and client count, ours / reference, as a
// Markdown table (printed and saved) and the full per-run JSON, in bench/results/.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { METRICS, type Figure, type Figures, type MetricInfo, type MetricName } from './metrics.ts';
import type { Options } from './options.ts';
import type { Machine } from './proc.ts';
import { median } from './stats.ts';

const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));

export type Target = 'ours' | 'ref';

export interface RunResult {
  target: Target;
  clients: number;
  rep: number;
  seconds: number;
  figures: Figures;
  /** What went wrong or was cut short; empty for a clean run. */
  notes: string[];
}

export interface BenchReport {
  date: string;
  machine: Machine & { openFiles: string };
  options: Options;
  totalSeconds: number;
  runs: RunResult[];
}

/** The options as saved and shown: values of secret-looking settings are masked. */
export function publicOptions(options: Options): Options {
  const serverEnv = Object.fromEntries(
    Object.entries(options.serverEnv).map(([k, v]) => [k, /SECRET|TOKEN|PASSWORD|KEY/i.test(k) ? '***' : v]),
  );
  return { ...options, serverEnv };
}

/** Median over the repetitions, or when any repetition has no number, the first reason why. */
function summarize(values: Figure[]): Figure | null {
  if (values.length === 0) return null;
  const reason = values.find((v): v is string => typeof v === 'string');
  return reason ?? median(values as number[]);
}

function format(value: Figure | null, info: MetricInfo): string {
  if (value === null) return '–';
  if (typeof value === 'string') return value;
  return value.toLocaleString('en-US', { minimumFractionDigits: info.decimals, maximumFractionDigits: info.decimals });
}

function cell(values: Figure[], info: MetricInfo): string {
  const middle = format(summarize(values), info);
  // The single runs beside the median show how much they spread.
  return values.length > 1 && values.every((v) => typeof v === 'number')
    ? `${middle} (${values.map((v) => format(v, info)).join(', ')})`
    : middle;
}

function ratio(ours: Figure | null, ref: Figure | null): string {
  if (typeof ours !== 'number' || typeof ref !== 'number' || ref === 0) return '–';
  return `${(ours / ref).toFixed(2)}`;
}

function table(runs: RunResult[], clients: number): string {
  const of = (target: Target, metric: MetricName): Figure[] =>
    runs
      .filter((r) => r.target === target && r.clients === clients)
      .map((r) => r.figures[metric])
      .filter((v): v is Figure => v !== undefined);
  const lines = [
    `### N = ${clients} clients`,
    '',
    '| metric | unit | better | ours: median (runs) | reference: median (runs) | ours / ref |',
    '| --- | --- | --- | ---: | ---: | ---: |',
  ];
  for (const [metric, info] of Object.entries(METRICS) as [MetricName, MetricInfo][]) {
    const ours = of('ours', metric);
    const ref = of('ref', metric);
    if (ours.length === 0 && ref.length === 0) continue;
    lines.push(
      `| ${info.label} | ${info.unit} | ${info.better} | ${cell(ours, info)} | ${cell(ref, info)} | ${ratio(summarize(ours), summarize(ref))} |`,
    );
  }
  const notes = runs
    .filter((r) => r.clients === clients && r.notes.length > 0)
    .flatMap((r) => r.notes.map((note) => `- ${r.target} run ${r.rep}: ${note.replace(/\s*\n\s*/g, ' / ')}`));
  if (notes.length > 0) lines.push('', 'Notes:', '', ...notes);
  return lines.join('\n');
}

export function markdown(report: BenchReport): string {
  const { machine: m, options: o } = report;
  const serverEnv = Object.entries(o.serverEnv).map(([k, v]) => `${k}=${v}`).join(' ') || 'none';
  const header = [
    '## push-server benchmark: ours vs reference (bare Socket.IO)',
    '',
    `- date: ${report.date}; total ${report.totalSeconds.toFixed(0)} s`,
    `- machine: ${m.cpus} CPUs, ${m.cpuModel}, ${m.memoryGiB} GiB RAM, Linux ${m.kernel}, open files ${m.openFiles}`,
    `- node ${m.node}`,
    `- load: socket.io-client 2.x clients (transports ${o.transports.join(',')}) in ${o.clientProcesses} processes, ` +
      `${o.connectWindow} connects in flight; legacy GET pushes on ${o.connections} keep-alive connections, ` +
      `${o.warmup} unmeasured warm-up pushes, then ${o.pushes} targeted pushes (at most ${o.pushSeconds} s), ${o.broadcasts} broadcasts, ${o.batches} v1 batches of 100`,
    `- runs per server and N: ${o.reps}, interleaved (ours, ref, ours, ref, ...), fresh processes each; medians, single runs in brackets`,
    `- our server's extra env: ${serverEnv}; node flags: ${o.nodeFlags.join(' ') || 'none'}`,
    '- "ours / ref" above 1 is better where "better" is higher, worse where it is lower',
  ];
  return [...header, '', ...o.clients.map((n) => table(report.runs, n) + '\n')].join('\n');
}

/**
 * Writes latest.{md,json} and a dated copy; each file appears whole or not at all. A quick
 * run writes quick-latest.{md,json} only (git-ignored), so smoke figures never pass for real ones.
 */
export function save(report: BenchReport, text: string): string[] {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = report.date.replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z');
  const json = JSON.stringify(report, null, 2) + '\n';
  const names = report.options.quick ? ['quick-latest'] : ['latest', stamp];
  const files = names.flatMap((name): [string, string][] => [
    [`${name}.md`, text],
    [`${name}.json`, json],
  ]);
  return files.map(([name, content]) => {
    const path = RESULTS_DIR + name;
    writeFileSync(`${path}.tmp`, content);
    renameSync(`${path}.tmp`, path);
    return path;
  });
}
