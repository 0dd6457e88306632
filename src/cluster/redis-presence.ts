// Presence across a cluster, in Redis: which uids have a page on any node, and the totals.
//
// Every node registers in a sorted set of live nodes scored by its lease expiry, renewed by a
// heartbeat. Its pages are a hash uid -> pages on that node, and they are also summed into
// cluster totals (uid -> pages anywhere, and all pages). A node that stops heartbeating (killed,
// frozen, cut off) is reaped by any other node's heartbeat once its lease has passed: its pages
// are taken out of the totals and it is forgotten. Each node also keeps a local mirror of its
// own pages, the truth of what this process holds: whenever Redis has lost or dropped the
// node's entries (a Redis restart without persistence, or this node reaped while it was
// frozen), the next heartbeat writes the mirror back whole.
import type { Logger } from '../log.ts';
import { PeriodicTask } from '../periodic.ts';
import type { OnlineCounts, Presence } from '../presence.ts';
import type { RedisCommands } from './redis-cluster-client.ts';
import { HEARTBEAT, LEAVE, SET_PAGES, STAGE, STAGE_UIDS, SWAP } from './redis-presence-scripts.ts';

export interface RedisPresenceOptions {
  /**
   * How long a node's pages outlive its last heartbeat, ms. A dead node's pages are gone
   * within leaseMs + heartbeatMs of its last beat (8 s with the defaults).
   * @default 6000
   */
  leaseMs?: number;
  /**
   * How often this node renews its lease and reaps dead nodes, ms. Must be less than
   * leaseMs; a third of leaseMs leaves room for two missed beats.
   * @default 2000
   */
  heartbeatMs?: number;
  /**
   * Put before every key, so several clusters (or test runs) can share one Redis.
   * @default 'push:'
   */
  prefix?: string;
  /**
   * The presence's own keys' prefix, in place of prefix + 'presence:'. A Redis Cluster gives
   * one with a hash tag (`{push:presence}:`), so that every script touches one slot.
   * @default prefix + 'presence:'
   */
  keyPrefix?: string;
  /**
   * Told of each uid left with no page anywhere when this node reaps a dead one: that uid's
   * last page is gone, as a removePage() that returned true would say. Webhooks use it.
   */
  onReapedOffline?: (uid: string) => void;
}

/** Dead nodes reaped by one heartbeat at most, so one beat never blocks Redis for long. */
const REAP_BATCH = 10;

function toNumbers(reply: unknown): number[] {
  if (!Array.isArray(reply)) throw new Error(`unexpected reply from Redis: ${String(reply)}`);
  return reply.map(Number);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class RedisPresence implements Presence {
  /** Pages of each uid on this node: what Redis must hold for it. */
  private readonly mirror = new Map<string, number>();
  private lastCounts: OnlineCounts = { users: 0, pages: 0 };
  private readonly keys: [nodes: string, users: string, pages: string];
  private readonly nodePrefix: string;
  private readonly leaseMs: number;
  private readonly heartbeatMs: number;
  private readonly onReapedOffline: (uid: string) => void;
  /** Its close() waits for the beat under way, so none writes after close(). */
  private readonly heartbeat: PeriodicTask;
  /** Redis may differ from the mirror (a write failed): the next beat writes the mirror whole. */
  private dirty = true;
  private registered = false;
  private readonly restoredListeners = new Set<() => void>();
  private closed: Promise<void> | null = null;

  /**
   * `nodeId` names this process in Redis: unique among live nodes (hostname, pid and a random
   * part, say); a node started with a dead node's id replaces that node's pages at its first beat.
   * The client is the caller's and stays open after close(). Commands go out on it in the
   * order they are made, which the mirror relies on: build it with disableOfflineQueue so a
   * write fails at once while Redis is away instead of waiting for it.
   */
  constructor(
    private readonly client: RedisCommands,
    private readonly nodeId: string,
    private readonly log: Logger,
    options: RedisPresenceOptions = {},
  ) {
    this.leaseMs = options.leaseMs ?? 6000;
    this.heartbeatMs = options.heartbeatMs ?? 2000;
    this.onReapedOffline = options.onReapedOffline ?? (() => {});
    if (!(this.heartbeatMs > 0 && this.heartbeatMs < this.leaseMs)) {
      throw new RangeError(`presence heartbeatMs (${this.heartbeatMs}) must be above 0 and below leaseMs (${this.leaseMs})`);
    }
    const p = options.keyPrefix ?? (options.prefix ?? 'push:') + 'presence:';
    this.keys = [p + 'nodes', p + 'users', p + 'pages'];
    this.nodePrefix = p + 'node:';
    this.heartbeat = new PeriodicTask(() => this.renew(), {
      everyMs: this.heartbeatMs,
      failing: (err) =>
        log.warn(`presence: heartbeat of node ${nodeId} failed (${describe(err)}); retrying every ${this.heartbeatMs} ms`),
      recovered: () => log.info(`presence: heartbeat of node ${nodeId} works again`),
    });
    void this.heartbeat.run(); // registers at once, not a beat later
  }

  async addPage(uid: string): Promise<boolean> {
    const n = (this.mirror.get(uid) ?? 0) + 1;
    this.mirror.set(uid, n);
    const { before, after } = await this.write(uid, n);
    return before === 0 && after > 0;
  }

  async removePage(uid: string): Promise<boolean> {
    const n = this.mirror.get(uid);
    if (n === undefined) return false;
    if (n > 1) this.mirror.set(uid, n - 1);
    else this.mirror.delete(uid);
    const { before, after } = await this.write(uid, n - 1);
    return before > 0 && after === 0;
  }

  /** While Redis is away, this node's own pages answer: local pushes still say ok. */
  async isOnline(uid: string): Promise<boolean> {
    try {
      return (await this.client.hExists(this.keys[1], uid)) === 1;
    } catch {
      return this.mirror.has(uid);
    }
  }

  async pagesOf(uid: string): Promise<number> {
    try {
      return Number((await this.client.hGet(this.keys[1], uid)) ?? 0);
    } catch {
      return this.mirror.get(uid) ?? 0;
    }
  }

  /** HSCAN over the cluster's online uids: the cursor is Redis's, "0" ends the walk. */
  async list(cursor: string | null, limit: number): Promise<{ uids: string[]; cursor: string | null }> {
    const { cursor: next, entries } = await this.client.hScan(this.keys[1], cursor ?? '0', { COUNT: limit });
    const uids = entries.map((e) => e.field);
    return { uids, cursor: String(next) === '0' ? null : String(next) };
  }

  /** While Redis is away, the last cluster totals it gave: counts do not flap to local ones. */
  async counts(): Promise<OnlineCounts> {
    try {
      const [users, pages] = await this.client.multi().hLen(this.keys[1]).get(this.keys[2]).exec();
      this.lastCounts = { users: Number(users), pages: Math.max(0, Number(pages ?? 0)) };
    } catch {
      // the outage is logged once by the connection; the heartbeat rewrites the mirror after
    }
    return this.lastCounts;
  }

  onRestored(listener: () => void): void {
    this.restoredListeners.add(listener);
  }

  /** Stops the heartbeat and removes this node's pages from the cluster at once. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      await this.heartbeat.close();
      this.mirror.clear();
      try {
        await this.eval(LEAVE);
      } catch (err) {
        // Redis is away: the lease removes them instead, within leaseMs
        this.log.warn(
          `presence: node ${this.nodeId} could not remove its pages on close (${describe(err)}); ` +
            `they expire within ${this.leaseMs} ms`,
        );
      }
    })();
    return this.closed;
  }

  /**
   * Writes the uid's page count on this node and answers the uid's cluster pages before and
   * after it. The mirror is changed before, in the same tick as the command is sent, so a
   * full rewrite of the mirror sent later includes this change and one sent earlier does not.
   */
  private async write(uid: string, n: number): Promise<{ before: number; after: number }> {
    if (this.closed) return { before: 0, after: 0 }; // the node has left; close() removed its pages
    // (a cluster client has no such flag: a write to its master that is away fails at once too)
    if ('isReady' in this.client && !this.client.isReady) {
      // it would fail at once (see the constructor): spared, the next beat writes the mirror
      this.dirty = true;
      return { before: 0, after: 0 };
    }
    try {
      const [known = 0, before = 0, after = 0] = toNumbers(await this.eval(SET_PAGES, uid, String(n)));
      if (known === 0 && this.registered) {
        // Redis forgot this node (restart, or reaped): this write re-registered it with this
        // uid only; the rest of the mirror follows now rather than at the next beat
        this.dirty = true;
        void this.heartbeat.run();
      }
      return { before, after };
    } catch {
      // It may or may not have been applied; the next beat rewrites all. The page still counts
      // here (the socket is served), but whether it was the uid's first or last page anywhere
      // is unknown, so no transition is reported: webhooks miss what happens during an outage.
      this.dirty = true;
      return { before: 0, after: 0 };
    }
  }

  private async renew(): Promise<void> {
    try {
      const [known, count, ...rest] = await this.eval(HEARTBEAT, String(REAP_BATCH)).then((r) => {
        if (!Array.isArray(r)) throw new Error(`unexpected reply from Redis: ${String(r)}`);
        return r.map(String);
      });
      const reaped = rest.slice(0, Number(count));
      for (const node of reaped) this.log.warn(`presence: node ${node} stopped heartbeating; its pages were removed`);
      // their last pages went with the dead node: told here, once, by the node that reaped it
      for (const uid of rest.slice(Number(count))) this.onReapedOffline(uid);
      if (this.closed) return;
      if (known !== '1' || this.dirty) {
        if (this.registered && known !== '1') {
          this.log.info(
            `presence: node ${this.nodeId} was not registered in Redis (Redis lost its data, or this node ` +
              `was reaped); writing its ${this.mirror.size} uids back`,
          );
        }
        this.dirty = false; // before the send: a write failing after it marks it again
        await this.rewrite();
        const wasRegistered = this.registered;
        this.registered = true;
        // the first write registers the node: nothing was answered for its pages before
        if (wasRegistered) for (const listener of this.restoredListeners) listener();
      }
    } catch (err) {
      this.dirty = true; // the heartbeat after the failure writes the mirror whole
      throw err;
    }
  }

  /**
   * Writes the mirror whole, in parts (see STAGE). Every command is made in this tick, so
   * none of this node's writes comes between them.
   */
  private async rewrite(): Promise<void> {
    const sent: Promise<unknown>[] = [];
    let part: string[] = [];
    const stage = () => {
      sent.push(this.eval(STAGE, sent.length === 0 ? '1' : '0', ...part));
      part = [];
    };
    for (const [uid, n] of this.mirror) {
      part.push(uid, String(n));
      if (part.length >= 2 * STAGE_UIDS) stage();
    }
    if (part.length > 0 || sent.length === 0) stage();
    sent.push(this.eval(SWAP));
    await Promise.all(sent);
  }

  /**
   * Scripts go as EVAL, not EVALSHA with a fallback: a fallback re-sends a script after later
   * commands, and these must reach Redis in the order they are made (see write()).
   */
  private eval(script: string, ...args: string[]): Promise<unknown> {
    return this.client.eval(script, {
      keys: [...this.keys],
      arguments: [this.nodePrefix, this.nodeId, String(this.leaseMs), ...args],
    });
  }
}
