// What the server keeps between pushes: stored messages awaiting an ack, idempotency keys and
// scheduled pushes. One interface; the in-memory implementation is the single-node default,
// and a cluster swaps in a shared one.
import { randomUUID } from 'node:crypto';
import { ExpiryQueue } from './expiry-queue.ts';
import type { KeptAnswer, ScheduledPush, StoredMessage } from './messages.ts';

/**
 * A claim: the key was free (`first`), taken (its first push's answer, null while that push is
 * being made), or refused because MAX_IDEMPOTENCY_BYTES are remembered already (`full`).
 */
export type ClaimResult =
  | { first: true }
  | { first: false; result: KeptAnswer | null }
  | { first: false; full: true };

/** Why schedule() refused: MAX_SCHEDULED pushes, or MAX_SCHEDULED_BYTES, are waiting. */
export type ScheduleOutcome = 'scheduled' | 'count' | 'bytes';

/** Where a page of scheduled pushes ends: the next page starts after this (at, id). */
export interface ScheduledCursor {
  at: number;
  id: string;
}

/**
 * A due push handed out by claimDue(). It stays in the store, due again when the claim's lease
 * ends, until fired() confirms it was made: a claimer that dies (or loses the store) before
 * confirming leaves it to be claimed again, so it is never lost, at worst made twice.
 */
export interface ClaimedPush {
  push: ScheduledPush;
  /** Names this claim: fired() removes the push only while it is still under this claim. */
  claim: string;
  /**
   * Claims made on the push as stored, this one included. Above 1, an earlier claimer did not
   * confirm it (it died or lost the store) and it may have been made already.
   */
  claims: number;
}

export interface ScheduledPage {
  scheduled: ScheduledPush[];
  /** Null when the page is the last. */
  next: ScheduledCursor | null;
}

/** Heap one idempotency key costs beyond its id, estimated: entry, compact answer, expiry. */
const IDEMPOTENCY_KEY_OVERHEAD = 400;

/**
 * The bytes an idempotency key is counted for against MAX_IDEMPOTENCY_BYTES; the same
 * formula in memory and in Redis (where the id is held twice: key name and expiry index).
 */
export function idempotencyKeyBytes(id: string): number {
  return IDEMPOTENCY_KEY_OVERHEAD + 2 * Buffer.byteLength(id);
}

export interface StoreStats {
  /** Stored (uid, message) pairs. */
  messages: number;
  /**
   * Estimated bytes they hold (an upper bound: shared data is counted per uid), what
   * MAX_STORE_BYTES counts in every store.
   */
  bytes: number;
  /** The embedded store only: its file's size (data.mdb), which MAX_STORE_BYTES bounds too. */
  fileBytes?: number;
  /**
   * Dropped to make room, oldest first, by this store object since it started: with a shared
   * store, what this node dropped (a sum over nodes is the cluster's).
   */
  dropped: number;
  /** Expired unacked and removed by this store object's sweep since it started (as `dropped`). */
  expired: number;
  scheduled: number;
  /** Bytes the waiting scheduled pushes hold, as JSON. */
  scheduledBytes: number;
}

/** A kept message in a page of a uid's, with the bytes the store counts it for (`add`'s). */
export interface PendingEntry {
  message: StoredMessage;
  bytes: number;
}

/** A page of a uid's kept messages (pendingPage). */
export interface PendingPage {
  entries: PendingEntry[];
  /** Where the next page starts (its `after`); null when no message of the uid follows. */
  next: number | null;
  /** The page ended at a message `maxBytes` had no room for: that message's bytes. */
  nextBytes?: number;
}

/** A message forgotten by ackThrough(). */
export type AckedMessage = Pick<StoredMessage, 'id' | 'expiresAt'>;

export interface MessageStore {
  /** Keeps `message` for each uid; `bytes` is its estimated size. Resolves how many were kept. */
  add(uids: readonly string[], message: StoredMessage, bytes: number): Promise<number>;
  /**
   * How many unexpired messages are kept for the uid (what a login's ack reports), reading
   * none of them: the expired ones are swept first. Where that sweep cannot write (a full
   * disk), one expired since the last sweep may still be counted.
   */
  pendingCount(uid: string): Promise<number>;
  /**
   * The uid's unexpired messages after cursor `after` (0: from the oldest), oldest first, one
   * page: it looks at no more than `limit` messages (an expired one is skipped, and counts) and
   * holds no more than `maxBytes` of them (as counted by `add`). A call's work and memory are
   * bounded by these however many the uid has; a page may be empty and have a next.
   */
  pendingPage(uid: string, after: number, limit: number, maxBytes: number): Promise<PendingPage>;
  /** The cursor of the uid's kept message `id` (a page after it starts past it); null when not kept. */
  cursorOf(uid: string, id: string): Promise<number | null>;
  /**
   * Forgets the uid's oldest messages up to and including cursor `through`, at most `limit`
   * (expired ones too); resolves those forgotten, oldest first. Fewer than `limit`: none is
   * left up to `through`.
   */
  ackThrough(uid: string, through: number, limit: number): Promise<AckedMessage[]>;
  /** Forgets a message for a uid; false when it was not there. */
  ack(uid: string, id: string): Promise<boolean>;
  /**
   * Claims an idempotency key for a lease, until `leaseUntil`: a taken key answers what its
   * first push answered (null while that push is being made). An unsettled key past its lease
   * is free again: its push failed and the release was lost (the store was away), or the node
   * making it died. Past MAX_IDEMPOTENCY_BYTES a new key is refused (`full`), never an older
   * one forgotten.
   */
  claim(id: string, leaseUntil: number): Promise<ClaimResult>;
  /**
   * Records what the push that claimed `id` answered, and keeps the key until `until`. A key
   * no longer held (its lease ran out first) stays forgotten.
   */
  settle(id: string, result: KeptAnswer, until: number): Promise<void>;
  /**
   * Frees a key whose push failed, so its retry is made. A settled key (its push was made)
   * stays. False when there was no unsettled key.
   */
  release(id: string): Promise<boolean>;
  /**
   * Keeps a push until it is due; refused when MAX_SCHEDULED pushes or MAX_SCHEDULED_BYTES
   * (its JSON) are waiting. `putBack` (a failed delivery going back) skips both bounds: the
   * push held its place until it was taken a moment ago.
   */
  schedule(push: ScheduledPush, putBack?: boolean): Promise<ScheduleOutcome>;
  cancel(id: string): Promise<boolean>;
  /**
   * Waiting pushes soonest first (ties by id), from after `after`: at most `limit` of them,
   * and no more than `maxBytes` of JSON unless one alone is larger (a page holds at least one).
   */
  scheduled(after: ScheduledCursor | null, limit: number, maxBytes: number): Promise<ScheduledPage>;
  /**
   * Claims up to `limit` of the pushes due by `now`, soonest first: each stays in the store,
   * due again at `leaseUntil`, and counts one more claim. A push is handed to one caller per
   * lease, however many nodes claim at once. Listing shows a claimed push at `leaseUntil`;
   * cancel() removes it (what was sent already stays sent).
   */
  claimDue(now: number, leaseUntil: number, limit: number): Promise<ClaimedPush[]>;
  /**
   * Confirms claimed pushes made: removes each one still under its claim. One scheduled again
   * meanwhile (a put-back, the same id scheduled anew) or cancelled is left as it is: never
   * removed, never brought back. Resolves how many were removed.
   */
  fired(claimed: readonly ClaimedPush[]): Promise<number>;
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
  /** Bytes (JSON) the scheduled pushes waiting hold in all. */
  maxScheduledBytes: number;
  /** Bytes the idempotency keys hold in all, counted by idempotencyKeyBytes(). */
  maxIdempotencyBytes: number;
}
/** How often expired messages and keys are swept, ms. */
const SWEEP_MS = 1000;

interface Entry {
  uid: string;
  message: StoredMessage;
  bytes: number;
  /** Its place in push order: the cursor of pendingPage(). */
  seq: number;
}

/** One uid's kept messages: by id, and in push order for pages that start at a cursor. */
class UidQueue {
  readonly byId = new Map<string, Entry>();
  /** In push order (seq); a removed entry stays until enough are removed to compact. */
  private list: Entry[] = [];
  private removed = 0;

  get size(): number {
    return this.byId.size;
  }

  /** The oldest. */
  first(): Entry | undefined {
    return this.byId.values().next().value;
  }

  add(entry: Entry): void {
    this.byId.set(entry.message.id, entry);
    this.list.push(entry);
  }

  remove(entry: Entry): void {
    if (this.byId.get(entry.message.id) !== entry) return;
    this.byId.delete(entry.message.id);
    if (++this.removed > 32 && this.removed * 2 > this.list.length) {
      this.list = this.list.filter((e) => this.byId.get(e.message.id) === e);
      this.removed = 0;
    }
  }

  /** The entries after cursor `after`, oldest first: a binary search, then only what is read. */
  *after(after: number): Generator<Entry> {
    let low = 0;
    let high = this.list.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.list[mid]!.seq <= after) low = mid + 1;
      else high = mid;
    }
    for (let i = low; i < this.list.length; i++) {
      const entry = this.list[i]!;
      if (this.byId.get(entry.message.id) === entry) yield entry;
    }
  }
}

export class MemoryMessageStore implements MessageStore {
  private readonly byUid = new Map<string, UidQueue>();
  private seq = 0;
  /** Every entry in the order it was added: the first is the oldest. */
  private readonly order = new Set<Entry>();
  private readonly expiries = new ExpiryQueue<Entry>();
  private bytes = 0;
  private dropped = 0;
  private expired = 0;

  private readonly keys = new Map<string, { until: number; result: KeptAnswer | null }>();
  private readonly keyExpiries = new ExpiryQueue<string>();
  private keyBytes = 0;

  /**
   * Kept as JSON: what is counted against MAX_SCHEDULED_BYTES is then what the heap holds
   * (UTF-8 bytes are at least a string's own bytes), not an estimate of a parsed object.
   */
  private readonly waiting = new Map<string, { at: number; json: string; bytes: number; claims: number; claim: string | null }>();
  private scheduledBytes = 0;
  private readonly dueQueue = new ExpiryQueue<string>();

  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly limits: StoreLimits,
    private readonly onExpired: ExpiredListener = () => {},
  ) {
    // a plain timer: the sweep is synchronous and cannot fail on its own; close() clears it
    this.sweeper = setInterval(() => this.sweep(Date.now()), SWEEP_MS);
  }

  async add(uids: readonly string[], message: StoredMessage, bytes: number): Promise<number> {
    let kept = 0;
    for (const uid of uids) {
      let queue = this.byUid.get(uid);
      if (!queue) this.byUid.set(uid, (queue = new UidQueue()));
      if (queue.byId.has(message.id)) continue;
      const entry: Entry = { uid, message, bytes, seq: ++this.seq };
      queue.add(entry);
      this.order.add(entry);
      this.expiries.push(message.expiresAt, entry);
      this.bytes += bytes;
      kept++;
      if (queue.size > this.limits.maxPendingPerUid) this.drop(queue.first()!);
    }
    while (this.bytes > this.limits.maxBytes && this.order.size > 0) this.drop(this.order.values().next().value!);
    return kept;
  }

  async pendingCount(uid: string): Promise<number> {
    this.sweep(Date.now()); // only what is due: the count is then of unexpired ones
    return this.byUid.get(uid)?.size ?? 0;
  }

  async pendingPage(uid: string, after: number, limit: number, maxBytes: number): Promise<PendingPage> {
    const queue = this.byUid.get(uid);
    const entries: PendingEntry[] = [];
    if (!queue) return { entries, next: null };
    const now = Date.now();
    let bytes = 0;
    let looked = 0;
    let next = after;
    for (const entry of queue.after(after)) {
      if (looked === limit) return { entries, next };
      if (entry.message.expiresAt > now) {
        if (bytes + entry.bytes > maxBytes) return { entries, next, nextBytes: entry.bytes };
        entries.push({ message: entry.message, bytes: entry.bytes });
        bytes += entry.bytes;
      }
      looked++;
      next = entry.seq;
    }
    return { entries, next: null };
  }

  async cursorOf(uid: string, id: string): Promise<number | null> {
    return this.byUid.get(uid)?.byId.get(id)?.seq ?? null;
  }

  async ackThrough(uid: string, through: number, limit: number): Promise<AckedMessage[]> {
    const queue = this.byUid.get(uid);
    const acked: AckedMessage[] = [];
    if (!queue) return acked;
    for (const entry of queue.byId.values()) {
      if (entry.seq > through || acked.length === limit) break;
      acked.push({ id: entry.message.id, expiresAt: entry.message.expiresAt });
      this.remove(entry); // deleting the entry the iteration is at is safe for a Map
    }
    return acked;
  }

  async ack(uid: string, id: string): Promise<boolean> {
    const entry = this.byUid.get(uid)?.byId.get(id);
    if (!entry) return false;
    this.remove(entry);
    return true;
  }

  async claim(id: string, leaseUntil: number): Promise<ClaimResult> {
    const now = Date.now();
    const held = this.keys.get(id);
    if (held && held.until > now) return { first: false, result: held.result };
    if (held) this.forgetKey(id);
    const bytes = idempotencyKeyBytes(id);
    if (this.keyBytes + bytes > this.limits.maxIdempotencyBytes) {
      this.sweepKeys(now); // room may have come free since the last sweep
      if (this.keyBytes + bytes > this.limits.maxIdempotencyBytes) return { first: false, full: true };
    }
    this.keys.set(id, { until: leaseUntil, result: null });
    this.keyBytes += bytes;
    this.keyExpiries.push(leaseUntil, id);
    return { first: true };
  }

  async settle(id: string, result: KeptAnswer, until: number): Promise<void> {
    const held = this.keys.get(id);
    if (!held || held.until <= Date.now()) return;
    held.result = result;
    held.until = until;
    this.keyExpiries.push(until, id); // the lease's entry, when due, sees the later until and keeps it
  }

  async release(id: string): Promise<boolean> {
    const held = this.keys.get(id);
    if (!held || held.result !== null) return false;
    this.forgetKey(id);
    return true;
  }

  async schedule(push: ScheduledPush, putBack = false): Promise<ScheduleOutcome> {
    const json = JSON.stringify(push);
    const bytes = Buffer.byteLength(json);
    const old = this.waiting.get(push.spec.id);
    if (!putBack) {
      if (!old && this.waiting.size >= this.limits.maxScheduled) return 'count';
      if (this.scheduledBytes - (old?.bytes ?? 0) + bytes > this.limits.maxScheduledBytes) return 'bytes';
    }
    this.scheduledBytes += bytes - (old?.bytes ?? 0);
    // a push scheduled again (a put-back) replaces a claim on its id: that claim's fired() leaves it
    this.waiting.set(push.spec.id, { at: push.at, json, bytes, claims: 0, claim: null });
    this.dueQueue.push(push.at, push.spec.id);
    return 'scheduled';
  }

  async cancel(id: string): Promise<boolean> {
    return this.unschedule(id) !== null;
  }

  async scheduled(after: ScheduledCursor | null, limit: number, maxBytes: number): Promise<ScheduledPage> {
    // sorts every waiting push per page: MAX_SCHEDULED bounds the work
    const ordered = [...this.waiting.entries()]
      .filter(([id, w]) => after === null || w.at > after.at || (w.at === after.at && id > after.id))
      .sort(([a, x], [b, y]) => x.at - y.at || (a < b ? -1 : a > b ? 1 : 0));
    const page: ScheduledPush[] = [];
    let bytes = 0;
    let last: ScheduledCursor | null = null;
    for (const [id, w] of ordered) {
      if (page.length >= limit || (page.length > 0 && bytes + w.bytes > maxBytes)) {
        return { scheduled: page, next: last };
      }
      page.push({ ...(JSON.parse(w.json) as ScheduledPush), at: w.at });
      bytes += w.bytes;
      last = { at: w.at, id };
    }
    return { scheduled: page, next: null };
  }

  async claimDue(now: number, leaseUntil: number, limit: number): Promise<ClaimedPush[]> {
    const claim = randomUUID();
    const claimed: ClaimedPush[] = [];
    // stale entries (a cancelled push, or one scheduled or claimed again later) are skipped
    for (let due = this.dueQueue.popDue(now, limit); due.length > 0; due = this.dueQueue.popDue(now, limit - claimed.length)) {
      for (const id of due) {
        const waiting = this.waiting.get(id);
        if (!waiting || waiting.at > now) continue;
        waiting.at = leaseUntil;
        waiting.claims++;
        waiting.claim = claim;
        claimed.push({ push: JSON.parse(waiting.json) as ScheduledPush, claim, claims: waiting.claims });
      }
      if (claimed.length >= limit) break;
    }
    // queued after the loop: a lease that is not after `now` must not be claimed twice in one call
    for (const { push } of claimed) this.dueQueue.push(leaseUntil, push.spec.id);
    return claimed;
  }

  async fired(claimed: readonly ClaimedPush[]): Promise<number> {
    let removed = 0;
    for (const { push, claim } of claimed) {
      if (this.waiting.get(push.spec.id)?.claim !== claim) continue;
      this.unschedule(push.spec.id);
      removed++;
    }
    return removed;
  }

  async stats(): Promise<StoreStats> {
    return {
      messages: this.order.size,
      bytes: this.bytes,
      dropped: this.dropped,
      expired: this.expired,
      scheduled: this.waiting.size,
      scheduledBytes: this.scheduledBytes,
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
    this.sweepKeys(now);
    if (this.keyExpiries.size > 2 * this.keys.size + 1024) this.keyExpiries.retain((id) => this.keys.has(id));
    if (this.dueQueue.size > 2 * this.waiting.size + 1024) this.dueQueue.retain((id) => this.waiting.has(id));
  }

  private sweepKeys(now: number): void {
    for (const id of this.keyExpiries.popDue(now)) {
      const held = this.keys.get(id);
      if (held && held.until <= now) this.forgetKey(id);
    }
  }

  private forgetKey(id: string): void {
    if (this.keys.delete(id)) this.keyBytes -= idempotencyKeyBytes(id);
  }

  private unschedule(id: string): ScheduledPush | null {
    const waiting = this.waiting.get(id);
    if (!waiting) return null;
    this.waiting.delete(id);
    this.scheduledBytes -= waiting.bytes;
    return JSON.parse(waiting.json) as ScheduledPush;
  }

  private drop(entry: Entry): void {
    this.remove(entry);
    this.dropped++;
  }

  private remove(entry: Entry): void {
    const queue = this.byUid.get(entry.uid);
    queue?.remove(entry);
    if (queue?.size === 0) this.byUid.delete(entry.uid);
    this.order.delete(entry);
    this.bytes -= entry.bytes;
  }
}
