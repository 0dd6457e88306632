// The benchmark's output: medians per server and client count, ours / reference, as a
// Markdown table (printed and saved) and the full per-run JSON, in bench/results/.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { METRICS, type Figure, type Figures, type MetricInfo, type MetricName } from './metrics.ts';
import type { Options, Target } from './options.ts';
import type { Machine } from './proc.ts';
import { median } from './stats.ts';

const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));

export type { Target };

/** Column names of the servers. */
const NAMES: Record<Target, string> = { ours: 'ours', full: 'ours, all features on', ref: 'reference' };

/**
 * The performance issue's targets (issue 13), at 5000 clients: a ratio to the reference
 * measured in the same run, or (batch) a figure of our own. Each must also hold with every
 * feature on, within 10% of the run with them off.
 */
interface Goal {
  metric: MetricName;
  /** `ratio`: ours / ref must be at most (lower is better) or at least `value`; `own`: the figure itself. */
  kind: 'ratio' | 'own';
  value: number;
  label: string;
}

const GOALS: Goal[] = [
  { metric: 'cpu_per_push_ms', kind: 'ratio', value: 0.5, label: 'CPU per targeted push' },
  { metric: 'push_p99_ms', kind: 'ratio', value: 0.5, label: 'end-to-end p99' },
  { metric: 'peak_rss_mb', kind: 'ratio', value: 0.4, label: 'peak RSS under push load' },
  { metric: 'mem_per_conn_kb', kind: 'ratio', value: 0.8, label: 'memory per idle connection' },
  { metric: 'fanout_p99_ms', kind: 'ratio', value: 0.8, label: 'broadcast all-received p99' },
  { metric: 'batch_vs_legacy', kind: 'own', value: 5, label: 'v1 batch, messages/s over legacy pushes/s' },
];

/** How far from the run with features off the run with them on may be. */
const FEATURES_TOLERANCE = 0.1;

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

function ratio(a: Figure | null, b: Figure | null): string {
  if (typeof a !== 'number' || typeof b !== 'number' || b === 0) return '–';
  return `${(a / b).toFixed(2)}`;
}

/** Every repetition's value of a figure, for one server and N. */
function valuesOf(runs: RunResult[], clients: number, target: Target, metric: MetricName): Figure[] {
  return runs
    .filter((r) => r.target === target && r.clients === clients)
    .map((r) => r.figures[metric])
    .filter((v): v is Figure => v !== undefined);
}

/** The median of a figure for one server and N, or null. */
export function medianOf(runs: RunResult[], clients: number, target: Target, metric: MetricName): number | null {
  const value = summarize(valuesOf(runs, clients, target, metric));
  return typeof value === 'number' ? value : null;
}

function table(runs: RunResult[], clients: number, targets: Target[]): string {
  const pairs: [Target, Target][] = ([['ours', 'ref'], ['full', 'ref'], ['full', 'ours']] as [Target, Target][]).filter(
    ([a, b]) => targets.includes(a) && targets.includes(b),
  );
  const lines = [
    `### N = ${clients} clients`,
    '',
    `| metric | unit | better | ${targets.map((t) => `${NAMES[t]}: median (runs)`).join(' | ')} | ${pairs.map(([a, b]) => `${a} / ${b}`).join(' | ')} |`,
    `| --- | --- | --- | ${targets.map(() => '---:').join(' | ')} | ${pairs.map(() => '---:').join(' | ')} |`,
  ];
  for (const [metric, info] of Object.entries(METRICS) as [MetricName, MetricInfo][]) {
    const values = targets.map((t) => valuesOf(runs, clients, t, metric));
    if (values.every((v) => v.length === 0)) continue;
    const ratios = pairs.map(([a, b]) => ratio(summarize(valuesOf(runs, clients, a, metric)), summarize(valuesOf(runs, clients, b, metric))));
    lines.push(`| ${info.label} | ${info.unit} | ${info.better} | ${values.map((v) => cell(v, info)).join(' | ')} | ${ratios.join(' | ')} |`);
  }
  lines.push('', goals(runs, clients, targets));
  const notes = runs
    .filter((r) => r.clients === clients && r.notes.length > 0)
    .flatMap((r) => r.notes.map((note) => `- ${r.target} run ${r.rep}: ${note.replace(/\s*\n\s*/g, ' / ')}`));
  if (notes.length > 0) lines.push('', 'Notes:', '', ...notes);
  return lines.join('\n');
}

/** The targets of the performance issue, met or missed, for the servers that ran. */
function goals(runs: RunResult[], clients: number, targets: Target[]): string {
  const ours = targets.filter((t): t is 'ours' | 'full' => t !== 'ref');
  if (ours.length === 0) return '';
  const lines = [
    `Targets (\`docs/performance.md\`; the issue sets them at N = 5000):`,
    '',
    `| figure | target | ${ours.map((t) => `${NAMES[t]}`).join(' | ')}${ours.length === 2 ? ' | on / off (within 10%?)' : ''} |`,
    `| --- | --- | ${ours.map(() => '---').join(' | ')}${ours.length === 2 ? ' | ---' : ''} |`,
  ];
  for (const goal of GOALS) {
    const info = METRICS[goal.metric];
    const lower = info.better === 'lower';
    const figure = (t: Target): number | null => {
      const own = medianOf(runs, clients, t, goal.metric);
      if (goal.kind === 'own' || own === null) return own;
      const ref = medianOf(runs, clients, 'ref', goal.metric);
      return ref === null || ref === 0 ? null : own / ref;
    };
    const verdict = (value: number | null): string => {
      if (value === null) return '–';
      const met = lower ? value <= goal.value : value >= goal.value;
      return `${value.toFixed(2)}x ${met ? 'met' : 'missed'}`;
    };
    const target = `${lower ? '≤' : '≥'} ${goal.value}x${goal.kind === 'ratio' ? ' ref' : ''}`;
    let row = `| ${goal.label} | ${target} | ${ours.map((t) => verdict(figure(t))).join(' | ')}`;
    if (ours.length === 2) {
      const on = medianOf(runs, clients, 'full', goal.metric);
      const off = medianOf(runs, clients, 'ours', goal.metric);
      if (on === null || off === null || off === 0) row += ' | –';
      else {
        const change = on / off;
        const within = lower ? change <= 1 + FEATURES_TOLERANCE : change >= 1 - FEATURES_TOLERANCE;
        row += ` | ${change.toFixed(2)} ${within ? 'yes' : 'no'}`;
      }
    }
    lines.push(`${row} |`);
  }
  return lines.join('\n');
}

export function markdown(report: BenchReport): string {
  const { machine: m, options: o } = report;
  const serverEnv = Object.entries(o.serverEnv).map(([k, v]) => `${k}=${v}`).join(' ') || 'none';
  const header = [
    '## push-server benchmark: ours vs reference (bare Socket.IO)',
    '',
    '"ours, all features on": PUSH_SECRET (pushes carry it), LOGIN_SECRET (pages log in with HMAC tokens), WEBHOOK_URL (a receiver in the runner) with WEBHOOK_SECRET, /metrics scraped every 2 s, the default embedded store.',
    '',
    `- date: ${report.date}; total ${report.totalSeconds.toFixed(0)} s`,
    `- machine: ${m.cpus} CPUs, ${m.cpuModel}, ${m.memoryGiB} GiB RAM, Linux ${m.kernel}, open files ${m.openFiles}`,
    `- node ${m.node}`,
    `- load: socket.io-client 2.x clients (transports ${o.transports.join(',')}) in ${o.clientProcesses} processes, ` +
      `${o.connectWindow} connects in flight; legacy GET pushes on ${o.connections} keep-alive connections, ` +
      `${o.warmup} unmeasured warm-up pushes, then ${o.pushes} targeted pushes (at most ${o.pushSeconds} s), ${o.broadcasts} broadcasts, ${o.batches} v1 batches of 100`,
    `- runs per server and N: ${o.reps}, interleaved (${o.targets.join(', ')}, ...), fresh processes each; medians, single runs in brackets`,
    `- our server's extra env: ${serverEnv}; node flags: ${o.nodeFlags.join(' ') || 'none'}`,
    '- "ours / ref" above 1 is better where "better" is higher, worse where it is lower',
  ];
  return [...header, '', ...o.clients.map((n) => table(report.runs, n, o.targets) + '\n')].join('\n');
}

/**
 * Writes latest.{md,json} (and latest-curve.svg for a run of several client counts) and a
 * dated copy; each file appears whole or not at all. A quick
 * run writes quick-latest.{md,json} only (git-ignored), so smoke figures never pass for real ones.
 */
export function save(report: BenchReport, text: string, curve: string | null = null): string[] {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = report.date.replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z');
  const json = JSON.stringify(report, null, 2) + '\n';
  const names = report.options.quick ? ['quick-latest'] : ['latest', stamp];
  const files = names.flatMap((name): [string, string][] => [
    [`${name}.md`, text],
    [`${name}.json`, json],
    ...(curve === null ? [] : ([[`${name}-curve.svg`, curve]] as [string, string][])),
  ]);
  return files.map(([name, content]) => {
    const path = RESULTS_DIR + name;
    writeFileSync(`${path}.tmp`, content);
    renameSync(`${path}.tmp`, path);
    return path;
  });
}
