// Every figure the benchmark reports, once: its key in results JSON, its label and unit in
// the table, and which way is better. Phases fill them in; the report lists them in this order.

export interface MetricInfo {
  label: string;
  unit: string;
  better: 'lower' | 'higher';
  decimals: number;
}

export const METRICS = {
  connect_s: { label: 'connect + login of N clients', unit: 's', better: 'lower', decimals: 2 },
  connect_rate: { label: 'logins per second', unit: '/s', better: 'higher', decimals: 0 },
  cpu_per_conn_ms: { label: 'server CPU per connection', unit: 'ms', better: 'lower', decimals: 3 },
  mem_per_conn_kb: { label: 'server RSS per connection', unit: 'KiB', better: 'lower', decimals: 1 },
  push_rate: { label: 'targeted pushes per second', unit: '/s', better: 'higher', decimals: 0 },
  delivery_rate: { label: 'targeted deliveries per second', unit: '/s', better: 'higher', decimals: 0 },
  push_lost: { label: 'targeted messages lost', unit: '', better: 'lower', decimals: 0 },
  push_p50_ms: { label: 'targeted latency p50', unit: 'ms', better: 'lower', decimals: 1 },
  push_p99_ms: { label: 'targeted latency p99', unit: 'ms', better: 'lower', decimals: 1 },
  cpu_per_push_ms: { label: 'server CPU per push', unit: 'ms', better: 'lower', decimals: 4 },
  push_cpu_pct: { label: 'server CPU while pushing (100 = one core)', unit: '%', better: 'lower', decimals: 0 },
  // Not a figure of the server: shows whether the load generator, not the server, was the limit.
  load_cpu_pct: { label: 'load generator CPU while pushing (bench runner + client workers)', unit: '%', better: 'lower', decimals: 0 },
  fanout_p50_ms: { label: 'broadcast: time until all N received, p50', unit: 'ms', better: 'lower', decimals: 1 },
  fanout_p99_ms: { label: 'broadcast: time until all N received, p99', unit: 'ms', better: 'lower', decimals: 1 },
  broadcast_lost: { label: 'broadcast deliveries lost', unit: '', better: 'lower', decimals: 0 },
  batch_rate: { label: 'v1 batch (100 per request): messages per second', unit: '/s', better: 'higher', decimals: 0 },
  batch_vs_legacy: { label: 'v1 batch messages/s ÷ legacy pushes/s', unit: 'x', better: 'higher', decimals: 2 },
  batch_lost: { label: 'v1 batch messages lost', unit: '', better: 'lower', decimals: 0 },
  batch_cpu_per_msg_ms: { label: 'v1 batch: server CPU per message', unit: 'ms', better: 'lower', decimals: 4 },
  // server CPU per legacy push ÷ per batch message: what a batch saves the server, apart from the load generator
  batch_cpu_gain: { label: 'server CPU per legacy push ÷ per batch message', unit: 'x', better: 'higher', decimals: 2 },
  batch_load_cpu_pct: { label: 'load generator CPU during batches', unit: '%', better: 'lower', decimals: 0 },
  peak_rss_mb: { label: 'server peak RSS (VmHWM)', unit: 'MiB', better: 'lower', decimals: 1 },
} satisfies Record<string, MetricInfo>;

export type MetricName = keyof typeof METRICS;

/** A number, or the reason there is none: `n/a (no v1 API)`, `timeout`, `skipped ...`. */
export type Figure = number | string;

export type Figures = Partial<Record<MetricName, Figure>>;
