// What this node saw, for the admin page: pushes (a total and a per-second meter), webhook
// outcomes (recent failures, and a ring of recent events bounded in bytes for the uid lookup)
// and the last hour of samples. Fed by the same observer calls as the metrics. In a cluster
// every node keeps its own, and the page's node asks the others (admin/peers.ts).
import type { WebhookEvent } from '../webhooks/events.ts';
import { History, type Sample } from './history.ts';

/** Failures kept for the page's table; older ones are forgotten. */
const RECENT_FAILURES = 20;
/** Bytes the ring of recent webhook events holds at most (about 1000 events). */
export const RECENT_WEBHOOK_EVENT_BYTES = 256 * 1024;
/** An error text is cut to this many characters in what the page shows. */
const MAX_ERROR_CHARS = 200;
/** Whole seconds the live pushes-per-second figure averages over, with the one under way. */
const RATE_SECONDS = 5;

export interface WebhookFailure {
  time: string;
  type: string;
  uid: string;
  error: string;
}

/** One webhook outcome for one url: sent (2xx), an attempt failed, or given up. */
export interface WebhookRecord {
  time: string;
  type: WebhookEvent['type'];
  uid: string;
  outcome: 'sent' | 'failed' | 'dropped';
  /** The error of a failed attempt, or why it was given up. */
  detail?: string;
}

/** This node's figures as it tells the page's node. */
export interface NodeSummary {
  /** Pushes accepted since this node started (legacy and v1, not the ones answered `fail`). */
  pushes: number;
  pushesPerSecond: number;
  webhookFailures: WebhookFailure[];
}

/** A byte-bounded ring: the oldest entries leave first. */
class ByteRing<T> {
  private readonly entries: { value: T; bytes: number }[] = [];
  private head = 0;
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  push(value: T, bytes: number): void {
    this.entries.push({ value, bytes });
    this.bytes += bytes;
    while (this.bytes > this.maxBytes && this.head < this.entries.length) {
      this.bytes -= this.entries[this.head]!.bytes;
      this.head++;
    }
    // compact now and then, so the array does not grow with what left it
    if (this.head > 64 && this.head * 2 > this.entries.length) {
      this.entries.splice(0, this.head);
      this.head = 0;
    }
  }

  /** Newest first. */
  filter(keep: (value: T) => boolean): T[] {
    const out: T[] = [];
    for (let i = this.entries.length - 1; i >= this.head; i--) {
      const { value } = this.entries[i]!;
      if (keep(value)) out.push(value);
    }
    return out;
  }

  get size(): number {
    return this.bytes;
  }
}

export class NodeStats {
  private pushes = 0;
  private readonly failures: WebhookFailure[] = [];
  private readonly events: ByteRing<WebhookRecord>;
  /** Pushes per whole second, for the last RATE_SECONDS + 1 seconds. */
  private readonly perSecond = new Map<number, number>();
  /** Counts since the last sample went into the history. */
  private sincePushes = 0;
  private sinceFailures = 0;
  readonly history: History;

  constructor(options: { sampleMs: number; eventBytes?: number }, private readonly now: () => number = Date.now) {
    this.events = new ByteRing(options.eventBytes ?? RECENT_WEBHOOK_EVENT_BYTES);
    this.history = new History(options.sampleMs);
  }

  pushed(): void {
    this.pushes++;
    this.sincePushes++;
    const second = Math.floor(this.now() / 1000);
    this.perSecond.set(second, (this.perSecond.get(second) ?? 0) + 1);
    if (this.perSecond.size > RATE_SECONDS + 2) {
      for (const s of this.perSecond.keys()) if (s <= second - RATE_SECONDS - 1) this.perSecond.delete(s);
    }
  }

  webhook(event: WebhookEvent, outcome: WebhookRecord['outcome'], detail?: string): void {
    const cut = detail === undefined ? undefined : detail.slice(0, MAX_ERROR_CHARS);
    const record: WebhookRecord = { time: new Date(this.now()).toISOString(), type: event.type, uid: event.uid, outcome, ...(cut === undefined ? {} : { detail: cut }) };
    // UTF-16 strings, plus the object and its place in the ring
    this.events.push(record, 2 * (record.uid.length + record.type.length + (cut?.length ?? 0) + 40) + 120);
    if (outcome !== 'failed') return;
    this.sinceFailures++;
    this.failures.unshift({ time: record.time, type: record.type, uid: record.uid, error: cut ?? '' });
    if (this.failures.length > RECENT_FAILURES) this.failures.pop();
  }

  /** The recent webhook events of `uid` this node holds, newest first. */
  webhookEventsOf(uid: string): WebhookRecord[] {
    return this.events.filter((r) => r.uid === uid);
  }

  /** Bytes the ring of recent webhook events holds now. */
  get webhookEventBytes(): number {
    return this.events.size;
  }

  summary(): NodeSummary {
    // the whole seconds before this one and this one so far
    const now = this.now();
    const second = Math.floor(now / 1000);
    let recent = 0;
    for (let s = second - RATE_SECONDS; s <= second; s++) recent += this.perSecond.get(s) ?? 0;
    const seconds = RATE_SECONDS + (now % 1000) / 1000;
    return { pushes: this.pushes, pushesPerSecond: recent / seconds, webhookFailures: [...this.failures] };
  }

  /** Takes a sample: this node's counts since the last one, with the (cluster-wide) gauges given. */
  sample(gauges: Pick<Sample, 'users' | 'pages' | 'backlog'>): void {
    this.history.add(this.now(), { ...gauges, pushes: this.sincePushes, webhookFailures: this.sinceFailures });
    this.sincePushes = 0;
    this.sinceFailures = 0;
  }
}
