// What became of each v1 push, for GET /api/v1/messages/:id: per uid its state (stored,
// delivered, acked, expired, dropped) with the time of each, or for a broadcast or a topic the
// sockets it was emitted to. Kept in this process's memory, bounded in bytes (MAX_STATUS_BYTES,
// oldest forgotten first); in a cluster each node keeps what it saw and a query asks the others
// (serverSideEmit), so the answer merges every node's view. docs/protocol.md §9.
import { ExpiryQueue } from './expiry-queue.ts';

/** A uid's states in the order a message moves through them; a later one wins (see docs). */
export const UID_STATES = ['stored', 'delivered', 'expired', 'dropped', 'acked'] as const;
export type UidState = (typeof UID_STATES)[number];

/**
 * Heap one status entry costs beyond its uids, and one uid beyond its characters (UTF-16, 2
 * bytes each): measured by bench/status-memory.ts (docs/performance.md), rounded up.
 */
export const STATUS_ENTRY_OVERHEAD = 400;
export const STATUS_UID_OVERHEAD = 160;

/** What one node knows of one message, as it travels between nodes (plain JSON). */
export interface StatusSnapshot {
  id: string;
  kind: 'uids' | 'broadcast' | 'topic';
  topic?: string;
  /** When the push was accepted, ms since the epoch (0 when this node saw only later steps). */
  ts: number;
  /** When this status is forgotten, ms since the epoch. */
  keepUntil: number;
  /** Broadcast and topic: sockets emitted to. */
  sockets?: number;
  /** Per uid: the time each state was reached (ms since the epoch), in UID_STATES order; 0 = not reached. */
  uids?: Record<string, number[]>;
}

/** The answer of GET /api/v1/messages/:id. */
export interface StatusAnswer {
  id: string;
  kind: 'uids' | 'broadcast' | 'topic';
  topic?: string;
  ts: string | null;
  sockets?: number;
  uids?: Record<string, { state: UidState; at: string; history: Partial<Record<UidState, string>> }>;
  /** In a cluster: a node did not answer in time, so a later state may be missing. */
  incomplete?: true;
}

interface Entry {
  id: string;
  kind: StatusSnapshot['kind'];
  topic: string | undefined;
  ts: number;
  keepUntil: number;
  sockets: number;
  /** Per uid: ms after `base` + 1 that each state was reached (0 = not), small integers. */
  uids: Map<string, number[]> | null;
  /** Times are kept as offsets from this (small integers instead of heap numbers). */
  base: number;
  bytes: number;
}

/** Asks the other nodes of a cluster; absent on one node. */
export interface StatusPeers {
  /** Their snapshots of `id` (those that have one); `complete` false when a node did not answer. */
  snapshots(id: string): Promise<{ snapshots: StatusSnapshot[]; complete: boolean }>;
  /** Sockets in `room` (null: every socket) on the other nodes, summed. */
  countSockets(room: string | null): Promise<number>;
}

export interface StatusLimits {
  /** Bytes (estimated) all entries may hold; past it the oldest is forgotten. */
  maxBytes: number;
  /** How long a fire-and-forget push's status is kept, and a stored one's past its ttl, ms. */
  keepMs: number;
}

const SWEEP_MS = 1000;

function uidBytes(uid: string): number {
  return STATUS_UID_OVERHEAD + 2 * uid.length;
}

export class MessageStatus {
  private readonly entries = new Map<string, Entry>();
  /**
   * Entries in insertion order from `head` on, some already removed: the first live one is the
   * oldest, forgotten first at MAX_STATUS_BYTES. Not the Map's own order: a Map's iterator
   * walks over the slots of deleted entries, so taking its first entry after many deletions
   * cost a scan each (15.8% of the server's time in a bench of v1 batches at the bound).
   */
  private order: (Entry | undefined)[] = [];
  private head = 0;
  private readonly expiries = new ExpiryQueue<Entry>();
  private bytes = 0;
  private forgotten = 0;
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly limits: StatusLimits,
    private peers: StatusPeers | null = null,
  ) {
    this.sweeper = setInterval(() => this.sweep(Date.now()), SWEEP_MS);
  }

  /** Set once the cluster is known (the Socket.IO server is built after the status). */
  setPeers(peers: StatusPeers): void {
    this.peers = peers;
  }

  /**
   * Until when the status of a message kept until `expiresAt` is kept: STATUS_SECONDS past it,
   * so its end (expired) can be read. A fire-and-forget push passes its ts.
   */
  keepUntil(expiresAt: number): number {
    return expiresAt + this.limits.keepMs;
  }

  /** A broadcast (topic undefined) or topic push, emitted to `localSockets` here; other nodes are asked. */
  fannedOut(id: string, ts: number, topic: string | undefined, localSockets: number, room: string | null): void {
    const entry = this.entry(id, topic === undefined ? 'broadcast' : 'topic', ts, this.keepUntil(ts), topic);
    entry.sockets += localSockets;
    this.peers?.countSockets(room).then(
      (n) => (entry.sockets += n),
      () => {}, // a node that did not answer is not counted; the log of the cluster says why
    );
  }

  /** A push to uids: each uid's first state (stored, delivered or dropped). */
  toUids(id: string, ts: number, keepUntil: number, states: readonly (readonly [uid: string, state: UidState])[]): void {
    const entry = this.entry(id, 'uids', ts, keepUntil);
    for (const [uid, state] of states) this.mark(entry, uid, state, ts);
  }

  /** Emitted to a page of `uid` (a redelivery, or a live emit). */
  delivered(uid: string, id: string, keepUntil: number): void {
    this.step(uid, id, 'delivered', keepUntil);
  }

  /**
   * A page of `uid` acked message `id`: where every ack is recorded (socket acks through
   * Delivery.ack; an SSE Last-Event-ID is an ack of each stored message up to it).
   */
  acked(uid: string, id: string, keepUntil: number): void {
    this.step(uid, id, 'acked', keepUntil);
  }

  /** The store let it expire unacked (the message.stored_expired listener). */
  expired(uid: string, id: string, keepUntil: number): void {
    this.step(uid, id, 'expired', keepUntil);
  }

  /** This node's view of `id`, or null. */
  local(id: string): StatusSnapshot | null {
    const e = this.entries.get(id);
    if (!e || e.keepUntil <= Date.now()) return null;
    const snapshot: StatusSnapshot = { id, kind: e.kind, ts: e.ts, keepUntil: e.keepUntil };
    if (e.topic !== undefined) snapshot.topic = e.topic;
    if (e.kind !== 'uids') snapshot.sockets = e.sockets;
    if (e.uids) {
      snapshot.uids = byUid();
      for (const [uid, times] of e.uids) snapshot.uids[uid] = times.map((t) => (t === 0 ? 0 : e.base + t - 1));
    }
    return snapshot;
  }

  /** Every node's view of `id` merged, or null when none has it. */
  async get(id: string): Promise<StatusAnswer | null> {
    const here = this.local(id);
    const others = this.peers ? await this.peers.snapshots(id) : { snapshots: [], complete: true };
    const all = [...(here ? [here] : []), ...others.snapshots];
    if (all.length === 0) return null;
    const answer = describe(merge(all));
    if (!others.complete) answer.incomplete = true;
    return answer;
  }

  stats(): { entries: number; bytes: number; forgotten: number } {
    return { entries: this.entries.size, bytes: this.bytes, forgotten: this.forgotten };
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  /** Forgets what is past its keepUntil; only what is due is looked at. */
  sweep(now: number): void {
    for (const e of this.expiries.popDue(now)) {
      if (this.entries.get(e.id) === e && e.keepUntil <= now) this.remove(e);
    }
    if (this.expiries.size > 2 * this.entries.size + 1024) this.expiries.retain((e) => this.entries.get(e.id) === e);
    this.compactOrder();
  }

  private step(uid: string, id: string, state: UidState, keepUntil: number): void {
    // a node that did not see the push (a redelivery or an ack on another node) starts its view
    const entry = this.entry(id, 'uids', 0, keepUntil);
    if (entry.kind === 'uids') this.mark(entry, uid, state, Date.now());
  }

  private entry(id: string, kind: Entry['kind'], ts: number, keepUntil: number, topic?: string): Entry {
    let e = this.entries.get(id);
    // a push (ts) on a status that holds one already reuses an id past IDEMPOTENCY_SECONDS: it
    // is another message, perhaps of another kind, and starts a status of its own
    if (e && e.keepUntil > Date.now() && (ts === 0 || e.ts === 0)) {
      if (ts !== 0) e.ts = ts;
      return e;
    }
    if (e) this.remove(e);
    e = { id, kind, topic, ts, keepUntil, sockets: 0, uids: kind === 'uids' ? new Map() : null, base: ts || Date.now(), bytes: 0 };
    this.entries.set(id, e);
    this.order.push(e);
    this.expiries.push(keepUntil, e);
    this.grow(e, STATUS_ENTRY_OVERHEAD + 2 * id.length + (topic === undefined ? 0 : 2 * topic.length));
    return e;
  }

  private mark(e: Entry, uid: string, state: UidState, at: number): void {
    let times = e.uids!.get(uid);
    if (!times) {
      times = [0, 0, 0, 0, 0];
      e.uids!.set(uid, times);
      this.grow(e, uidBytes(uid));
    }
    const i = UID_STATES.indexOf(state);
    if (times[i] === 0) times[i] = Math.max(0, at - e.base) + 1;
  }

  /** Adds `bytes` to what `e` costs, and to the total: what remove() takes back is what was added. */
  private grow(e: Entry, bytes: number): void {
    if (e !== this.entries.get(e.id)) return;
    e.bytes += bytes;
    this.bytes += bytes;
    // oldest first; never the entry being written (one entry alone may pass the bound)
    while (this.bytes > this.limits.maxBytes && this.entries.size > 1) {
      const oldest = this.oldestBesides(e);
      if (oldest === undefined) break;
      this.remove(oldest);
      this.forgotten++;
    }
  }

  /**
   * The oldest live entry other than `e`, the one being written. When `e` is the oldest (a step
   * on an early message), it trades places in `order` with the next live one, as if written
   * then: the others are forgotten in their order, and no slot is scanned twice.
   */
  private oldestBesides(e: Entry): Entry | undefined {
    const oldest = this.oldest();
    if (oldest !== e) return oldest;
    for (let i = this.head + 1; i < this.order.length; i++) {
      const next = this.order[i];
      if (next === undefined || this.entries.get(next.id) !== next) continue;
      this.order[this.head] = next;
      this.order[i] = e;
      return next;
    }
    return undefined;
  }

  /** The oldest live entry; the removed ones before it are dropped from `order`. */
  private oldest(): Entry | undefined {
    while (this.head < this.order.length) {
      const e = this.order[this.head]!;
      if (this.entries.get(e.id) === e) return e;
      this.order[this.head++] = undefined;
    }
    return undefined;
  }

  /** Drops removed entries from `order` once they are most of it (amortized O(1) a push). */
  private compactOrder(): void {
    if (this.order.length - this.head <= 2 * this.entries.size + 1024) return;
    this.order = this.order.slice(this.head).filter((e) => e !== undefined && this.entries.get(e.id) === e);
    this.head = 0;
  }

  private remove(e: Entry): void {
    if (this.entries.get(e.id) !== e) return;
    this.entries.delete(e.id);
    this.bytes -= e.bytes;
  }
}

/**
 * An object keyed by uid, as the answers and snapshots are (JSON): without a prototype, so a
 * uid named like one of Object.prototype's members (`constructor`, `toString`, `__proto__`) is
 * a key like any other. On a plain object, reading such a uid found the member (a merge wrote
 * into it) and writing `__proto__` set the prototype: the uid was missing from the answer.
 */
function byUid<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

/** The state a uid is in: the furthest reached, in UID_STATES order. */
function stateOf(times: readonly number[]): number {
  for (let i = UID_STATES.length - 1; i >= 0; i--) if ((times[i] ?? 0) !== 0) return i;
  return 0;
}

/** Several nodes' views of one message as one: each state at the first time any node saw it. */
export function merge(snapshots: readonly StatusSnapshot[]): StatusSnapshot {
  // the node that made the push knows its kind; a node that saw only an ack says 'uids'
  const made = snapshots.find((s) => s.ts !== 0) ?? snapshots[0]!;
  const out: StatusSnapshot = { ...made, keepUntil: Math.max(...snapshots.map((s) => s.keepUntil)) };
  if (made.kind !== 'uids') {
    out.sockets = snapshots.reduce((sum, s) => sum + (s.sockets ?? 0), 0);
    return out;
  }
  const uids = byUid<number[]>();
  for (const s of snapshots) {
    for (const [uid, times] of Object.entries(s.uids ?? {})) {
      const have = uids[uid];
      if (!have) uids[uid] = [...times];
      else times.forEach((t, i) => (have[i] = have[i] === 0 || (t !== 0 && t < have[i]!) ? t : have[i]!));
    }
  }
  out.uids = uids;
  return out;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function describe(s: StatusSnapshot): StatusAnswer {
  const answer: StatusAnswer = { id: s.id, kind: s.kind, ts: s.ts === 0 ? null : iso(s.ts) };
  if (s.topic !== undefined) answer.topic = s.topic;
  if (s.kind !== 'uids') {
    answer.sockets = s.sockets ?? 0;
    return answer;
  }
  answer.uids = byUid();
  for (const [uid, times] of Object.entries(s.uids ?? {})) {
    const i = stateOf(times);
    const history: Partial<Record<UidState, string>> = {};
    UID_STATES.forEach((state, j) => {
      if (times[j]) history[state] = iso(times[j]!);
    });
    answer.uids[uid] = { state: UID_STATES[i]!, at: iso(times[i]!), history };
  }
  return answer;
}

/** Whether a value from another node is a snapshot (they are trusted, but a bug should not crash the query). */
export function isSnapshot(value: unknown): value is StatusSnapshot {
  if (typeof value !== 'object' || value === null) return false;
  const s = value as Partial<Record<keyof StatusSnapshot, unknown>>;
  if (typeof s.id !== 'string' || !['uids', 'broadcast', 'topic'].includes(s.kind as string)) return false;
  if (!Number.isFinite(s.ts) || !Number.isFinite(s.keepUntil)) return false;
  if (s.topic !== undefined && typeof s.topic !== 'string') return false;
  if (s.sockets !== undefined && !Number.isFinite(s.sockets)) return false;
  if (s.uids === undefined) return true;
  if (typeof s.uids !== 'object' || s.uids === null) return false;
  return Object.values(s.uids).every((t) => Array.isArray(t) && t.length === UID_STATES.length && t.every((n) => Number.isFinite(n)));
}

/** A peer's answer about `id`: well-formed and about that message (a cluster peer is checked, not trusted). */
export function isSnapshotOf(id: string): (value: unknown) => value is StatusSnapshot {
  return (value): value is StatusSnapshot => isSnapshot(value) && value.id === id;
}
