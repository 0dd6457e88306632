// What the server keeps between pushes: stored messages awaiting an ack, idempotency keys and
// scheduled pushes. One interface; the in-memory implementation is the single-node default,
// and a cluster swaps in a shared one.
import type { PushResult, PushSpec } from './delivery.ts';
import { ExpiryQueue } from './expiry-queue.ts';

/** A message kept for a uid until it acks it or it expires. */
export interface StoredMessage {
  id: string;
  event: string;
  data: unknown;
  /** When it was accepted, ms since the epoch. */
  ts: number;
  /** When it stops being delivered, ms since the epoch. */
  expiresAt: number;
}

/** A push accepted now to be made at `at` (ms since the epoch). */
export interface ScheduledPush {
  at: number;
  spec: PushSpec;
}

/** What a push answered, kept with its idempotency key; null while it is being made. */
export type ClaimResult =
  | { first: true }
  | { first: false; result: PushResult | { id: string; at: number } | null };

export interface StoreStats {
  /** Stored (uid, message) pairs. */
  messages: number;
  /** Estimated bytes they hold (an upper bound: shared data is counted per uid). */
  bytes: number;
  /** Dropped to make room, oldest first, since start. */
  dropped: number;
  /** Expired unacked, since start. */
  expired: number;
  scheduled: number;
}

export interface MessageStore {
  /** Keeps `message` for each uid; `bytes` is its estimated size. Resolves how many were kept. */
  add(uids: readonly string[], message: StoredMessage, bytes: number): Promise<number>;
  /** The uid's unexpired messages, oldest first. */
  pending(uid: string): Promise<StoredMessage[]>;
  /** Forgets a message for a uid; false when it was not there. */
  ack(uid: string, id: string): Promise<boolean>;
  /** Claims an idempotency key until `until`; a taken key answers what its first push answered. */
  claim(id: string, until: number): Promise<ClaimResult>;
  /** Records what the push that claimed `id` answered. */
  settle(id: string, result: PushResult | { id: string; at: number }): Promise<void>;
  /** False when MAX_SCHEDULED pushes are already waiting. */
  schedule(push: ScheduledPush): Promise<boolean>;
  cancel(id: string): Promise<boolean>;
  /** Waiting pushes, soonest first. */
  scheduled(): Promise<ScheduledPush[]>;
  /** Removes and returns the pushes due by `now`; each is returned once. */
  takeDue(now: number): Promise<ScheduledPush[]>;
  stats(): Promise<StoreStats>;
  close(): Promise<void>;
}

/**
 * Told of each stored message that expired unacked, once per (uid, message) even when several
 * nodes sweep one shared store: the message.stored_expired webhook.
 */
export type ExpiredListener = (uid: string, message: StoredMessage) => void;

/** A shared store that cannot be reached now: the API answers 503 with this message. */
export class StoreUnavailableError extends Error {
  readonly status = 503;
  readonly expose = true;
  override name = 'StoreUnavailableError';
}

export interface StoreLimits {
  /** Messages kept per uid; past it the uid's oldest is dropped. */
  maxPendingPerUid: number;
  /** Estimated bytes kept in all; past it the oldest message of any uid is dropped. */
  maxBytes: number;
  /** Scheduled pushes waiting at once. */
  maxScheduled: number;
}

/** Idempotency keys kept at once; past it the oldest is forgotten. */
const MAX_IDEMPOTENCY_KEYS = 100_000;
/** How often expired messages and keys are swept, ms. */
const SWEEP_MS = 1000;

interface Entry {
  uid: string;
  message: StoredMessage;
  bytes: number;
}

export class MemoryMessageStore implements MessageStore {
  private readonly byUid = new Map<string, Map<string, Entry>>();
  /** Every entry in the order it was added: the first is the oldest. */
  private readonly order = new Set<Entry>();
  private readonly expiries = new ExpiryQueue<Entry>();
  private bytes = 0;
  private dropped = 0;
  private expired = 0;

  private readonly keys = new Map<string, { until: number; result: PushResult | { id: string; at: number } | null }>();
  private readonly keyExpiries = new ExpiryQueue<string>();

  private readonly waiting = new Map<string, ScheduledPush>();
  private readonly dueQueue = new ExpiryQueue<string>();

  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly limits: StoreLimits,
    private readonly onExpired: ExpiredListener = () => {},
  ) {
    this.sweeper = setInterval(() => this.sweep(Date.now()), SWEEP_MS);
    this.sweeper.unref();
  }

  async add(uids: readonly string[], message: StoredMessage, bytes: number): Promise<number> {
    let kept = 0;
    for (const uid of uids) {
      let queue = this.byUid.get(uid);
      if (!queue) this.byUid.set(uid, (queue = new Map()));
      if (queue.has(message.id)) continue;
      const entry: Entry = { uid, message, bytes };
      queue.set(message.id, entry);
      this.order.add(entry);
      this.expiries.push(message.expiresAt, entry);
      this.bytes += bytes;
      kept++;
      if (queue.size > this.limits.maxPendingPerUid) this.drop(queue.values().next().value!);
    }
    while (this.bytes > this.limits.maxBytes && this.order.size > 0) this.drop(this.order.values().next().value!);
    return kept;
  }

  async pending(uid: string): Promise<StoredMessage[]> {
    const queue = this.byUid.get(uid);
    if (!queue) return [];
    const now = Date.now();
    const out: StoredMessage[] = [];
    for (const { message } of queue.values()) if (message.expiresAt > now) out.push(message);
    return out;
  }

  async ack(uid: string, id: string): Promise<boolean> {
    const entry = this.byUid.get(uid)?.get(id);
    if (!entry) return false;
    this.remove(entry);
    return true;
  }

  async claim(id: string, until: number): Promise<ClaimResult> {
    const held = this.keys.get(id);
    if (held && held.until > Date.now()) return { first: false, result: held.result };
    this.keys.delete(id); // re-inserted last, so the insertion order stays the age order
    this.keys.set(id, { until, result: null });
    this.keyExpiries.push(until, id);
    if (this.keys.size > MAX_IDEMPOTENCY_KEYS) this.keys.delete(this.keys.keys().next().value!);
    return { first: true };
  }

  async settle(id: string, result: PushResult | { id: string; at: number }): Promise<void> {
    const held = this.keys.get(id);
    if (held) held.result = result;
  }

  async schedule(push: ScheduledPush): Promise<boolean> {
    if (this.waiting.size >= this.limits.maxScheduled) return false;
    this.waiting.set(push.spec.id, push);
    this.dueQueue.push(push.at, push.spec.id);
    return true;
  }

  async cancel(id: string): Promise<boolean> {
    return this.waiting.delete(id);
  }

  async scheduled(): Promise<ScheduledPush[]> {
    return [...this.waiting.values()].sort((a, b) => a.at - b.at);
  }

  async takeDue(now: number): Promise<ScheduledPush[]> {
    const due: ScheduledPush[] = [];
    for (const id of this.dueQueue.popDue(now)) {
      const push = this.waiting.get(id);
      // a cancelled push, or one re-scheduled later under the same id, is not due now
      if (push && push.at <= now) {
        this.waiting.delete(id);
        due.push(push);
      }
    }
    return due;
  }

  async stats(): Promise<StoreStats> {
    return {
      messages: this.order.size,
      bytes: this.bytes,
      dropped: this.dropped,
      expired: this.expired,
      scheduled: this.waiting.size,
    };
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }

  /** Drops expired messages and keys; only what is due is looked at. */
  sweep(now: number): void {
    for (const entry of this.expiries.popDue(now)) {
      if (!this.order.has(entry)) continue; // acked or dropped already
      this.remove(entry);
      this.expired++;
      this.onExpired(entry.uid, entry.message);
    }
    // acked entries stay in the heap until due; rebuild it when they dominate
    if (this.expiries.size > 2 * this.order.size + 1024) this.expiries.retain((e) => this.order.has(e));
    for (const id of this.keyExpiries.popDue(now)) {
      const held = this.keys.get(id);
      if (held && held.until <= now) this.keys.delete(id);
    }
    if (this.keyExpiries.size > 2 * this.keys.size + 1024) this.keyExpiries.retain((id) => this.keys.has(id));
    if (this.dueQueue.size > 2 * this.waiting.size + 1024) this.dueQueue.retain((id) => this.waiting.has(id));
  }

  private drop(entry: Entry): void {
    this.remove(entry);
    this.dropped++;
  }

  private remove(entry: Entry): void {
    const queue = this.byUid.get(entry.uid);
    queue?.delete(entry.message.id);
    if (queue?.size === 0) this.byUid.delete(entry.uid);
    this.order.delete(entry);
    this.bytes -= entry.bytes;
  }
}
