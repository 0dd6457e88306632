// The last hour of the admin page's samples, in fixed-size typed arrays: its memory is set at
// start (6 numbers a sample, at most MAX_SAMPLES of them) whatever runs. Sample times are
// rounded to the sample interval, so the samples of a cluster's nodes meet on the same times
// and merge (mergeHistories) into cluster-wide series.

/** The span the page's charts show. */
export const HISTORY_MS = 3_600_000;
/** Samples kept at most, whatever ADMIN_SAMPLE_MS is (3600 x 6 x 8 bytes = 169 KiB). */
export const MAX_SAMPLES = 3600;

/** One sample. Gauges are cluster-wide readings (null: could not be read); counts are per interval. */
export interface Sample {
  /** Sample time, ms since the epoch, a multiple of the interval. */
  t: number;
  users: number | null;
  pages: number | null;
  /** Stored messages waiting for their uids. */
  backlog: number | null;
  /** Pushes accepted in the interval before `t`. */
  pushes: number;
  /** Webhook attempts failed in the interval before `t`. */
  webhookFailures: number;
}

export interface HistoryJson {
  sampleMs: number;
  samples: Sample[];
}

const FIELDS = ['t', 'users', 'pages', 'backlog', 'pushes', 'webhookFailures'] as const;

export class History {
  readonly capacity: number;
  private readonly columns: Record<(typeof FIELDS)[number], Float64Array>;
  private next = 0;
  private count = 0;

  constructor(readonly sampleMs: number) {
    this.capacity = Math.min(MAX_SAMPLES, Math.ceil(HISTORY_MS / sampleMs));
    this.columns = Object.fromEntries(FIELDS.map((f) => [f, new Float64Array(this.capacity)])) as History['columns'];
  }

  add(now: number, sample: Omit<Sample, 't'>): void {
    const t = Math.round(now / this.sampleMs) * this.sampleMs;
    let slot = this.next;
    const last = (this.next - 1 + this.capacity) % this.capacity;
    if (this.count > 0 && this.columns.t[last] === t) {
      // a second sample in one interval (a late timer): counts add up, gauges take the newer
      slot = last;
      sample = { ...sample, pushes: sample.pushes + this.columns.pushes[slot]!, webhookFailures: sample.webhookFailures + this.columns.webhookFailures[slot]! };
    } else {
      this.next = (this.next + 1) % this.capacity;
      this.count = Math.min(this.count + 1, this.capacity);
    }
    this.columns.t[slot] = t;
    this.columns.users[slot] = sample.users ?? NaN;
    this.columns.pages[slot] = sample.pages ?? NaN;
    this.columns.backlog[slot] = sample.backlog ?? NaN;
    this.columns.pushes[slot] = sample.pushes;
    this.columns.webhookFailures[slot] = sample.webhookFailures;
  }

  /** The samples of the last hour before `now`, oldest first. */
  toJSON(now = Date.now()): HistoryJson {
    const samples: Sample[] = [];
    const gauge = (v: number) => (Number.isNaN(v) ? null : v);
    for (let i = this.count; i > 0; i--) {
      const slot = (this.next - i + this.capacity) % this.capacity;
      const t = this.columns.t[slot]!;
      if (t <= now - HISTORY_MS) continue;
      samples.push({
        t,
        users: gauge(this.columns.users[slot]!),
        pages: gauge(this.columns.pages[slot]!),
        backlog: gauge(this.columns.backlog[slot]!),
        pushes: this.columns.pushes[slot]!,
        webhookFailures: this.columns.webhookFailures[slot]!,
      });
    }
    return { sampleMs: this.sampleMs, samples };
  }
}

/**
 * The nodes' histories as one: per sample time the counts summed over the nodes, the gauges
 * (the same cluster-wide readings, taken by each node) the highest one read.
 */
export function mergeHistories(histories: HistoryJson[], sampleMs: number): HistoryJson {
  const byTime = new Map<number, Sample>();
  for (const history of histories) {
    if (history.sampleMs !== sampleMs) continue; // a node with another ADMIN_SAMPLE_MS cannot be merged
    for (const s of history.samples) {
      const seen = byTime.get(s.t);
      if (!seen) {
        byTime.set(s.t, { ...s });
        continue;
      }
      seen.pushes += s.pushes;
      seen.webhookFailures += s.webhookFailures;
      for (const g of ['users', 'pages', 'backlog'] as const) {
        const v = s[g];
        if (v !== null && (seen[g] === null || v > seen[g])) seen[g] = v;
      }
    }
  }
  return { sampleMs, samples: [...byTime.values()].sort((a, b) => a.t - b.t) };
}

/** A history from another node, checked: a peer's reply is data from the network. */
export function isHistoryJson(value: unknown): value is HistoryJson {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Partial<HistoryJson>;
  if (typeof v.sampleMs !== 'number' || !Array.isArray(v.samples) || v.samples.length > MAX_SAMPLES) return false;
  const num = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
  const gauge = (x: unknown) => x === null || num(x);
  return v.samples.every(
    (s: Sample) => typeof s === 'object' && s !== null && num(s.t) && num(s.pushes) && num(s.webhookFailures) && gauge(s.users) && gauge(s.pages) && gauge(s.backlog),
  );
}
