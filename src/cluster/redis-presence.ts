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
import type { OnlineCounts, Presence } from '../presence.ts';
import type { RedisClient } from './redis-client.ts';

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
   * Told of each uid left with no page anywhere when this node reaps a dead one: that uid's
   * last page is gone, as a removePage() that returned true would say. Webhooks use it.
   */
  onReapedOffline?: (uid: string) => void;
}

/*
 * Keys, after the prefix:
 *   presence:nodes        ZSET node id -> lease expiry (Redis TIME, ms; no node's clock matters)
 *   presence:node:<id>    HASH uid -> pages of the uid on that node
 *   presence:node:<id>:next  HASH, the same while a rewrite of the node is staged (see STAGE)
 *   presence:users        HASH uid -> pages of the uid on every node; a uid is here iff > 0
 *   presence:pages        pages on every node
 * Invariant, kept by doing every change inside one of the scripts below: users[uid] is the
 * sum over live nodes of node:<id>[uid], and pages is the sum of users. A reaped node's hash is
 * deleted in the same script that subtracts it, so two nodes reaping at once subtract it once.
 *
 * Scripts take KEYS = [nodes, users, pages] and ARGV = [node key prefix, node id, lease ms, ...];
 * the node hashes are named inside (a single Redis, or one Cluster slot through a hash tag
 * in the prefix).
 */
const PRELUDE = `
local nodes, users, pages = KEYS[1], KEYS[2], KEYS[3]
local nodePrefix, self, leaseMs = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- renews this node's lease; true when it was registered already
local function renew()
  local known = redis.call('ZSCORE', nodes, self)
  redis.call('ZADD', nodes, now + leaseMs, self)
  return known ~= false
end

-- moves diff pages of uid into (or out of) the totals; true when the uid has none left
local function adjust(uid, diff)
  if diff == 0 then return false end
  redis.call('INCRBY', pages, diff)
  if redis.call('HINCRBY', users, uid, diff) <= 0 then
    redis.call('HDEL', users, uid)
    return true
  end
  return false
end

-- takes a node's pages out of the totals and deletes its hash; the uids left with no page
-- anywhere are added to \`offline\` when one is given
local function forget(node, offline)
  local flat = redis.call('HGETALL', nodePrefix .. node)
  for i = 1, #flat, 2 do
    if adjust(flat[i], -tonumber(flat[i + 1])) and offline then table.insert(offline, flat[i]) end
  end
  redis.call('DEL', nodePrefix .. node)
end
`;

/**
 * ARGV[4]: how many dead nodes to reap at most. Renews this node's lease, then reaps nodes
 * whose lease has passed. Returns [1 if this node was registered, the number of reaped
 * nodes, their ids..., the uids their death left with no page anywhere...].
 */
const HEARTBEAT = `${PRELUDE}
local known = renew()
local dead = redis.call('ZRANGEBYSCORE', nodes, '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[4]))
local offline = {}
for _, node in ipairs(dead) do
  forget(node, offline)
  redis.call('ZREM', nodes, node)
end
local reply = {known and 1 or 0, #dead}
for _, node in ipairs(dead) do table.insert(reply, node) end
for _, uid in ipairs(offline) do table.insert(reply, uid) end
return reply
`;

/**
 * ARGV[4], ARGV[5]: uid, pages of it on this node now (absolute, not a delta: a repeated or
 * late write cannot count a page twice). Returns [1 if this node was registered, the uid's
 * cluster pages before, after].
 */
const SET_PAGES = `${PRELUDE}
local known = renew()
local uid, n = ARGV[4], tonumber(ARGV[5])
local node = nodePrefix .. self
local old = tonumber(redis.call('HGET', node, uid) or '0')
if n > 0 then redis.call('HSET', node, uid, n) else redis.call('HDEL', node, uid) end
local before = tonumber(redis.call('HGET', users, uid) or '0')
adjust(uid, n - old)
return {known and 1 or 0, before, before + n - old}
`;

/*
 * A rewrite of the whole mirror is too big for one call (two arguments per uid: node-redis
 * throws RangeError above ~65k uids), so it goes in parts. The parts fill a staging hash
 * (node:<id>:next), which no total counts; the last script swaps it in, subtracting the old
 * entries and adding the new ones in one step. So the totals stay right at every moment,
 * with no dip while the parts arrive. The parts and the swap are sent in one tick, in order,
 * so no write of this node comes between them: a later write lands after the swap, on top of
 * it. A node reaped meanwhile loses its old hash, and the swap subtracts nothing for it. A
 * rewrite cut short (Redis lost) leaves a staging hash that the next rewrite starts over and
 * that expires on its own after a few leases.
 */

/** ARGV[4]: '1' for the first part (starts the staging hash over); ARGV[5..]: uid, pages... */
const STAGE = `${PRELUDE}
local staging = nodePrefix .. self .. ':next'
if ARGV[4] == '1' then redis.call('DEL', staging) end
for i = 5, #ARGV, 2 do redis.call('HSET', staging, ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', staging, 10 * leaseMs)
return 1
`;

/** Replaces this node's entries with the staged ones (none staged: no entries). */
const SWAP = `${PRELUDE}
renew()
forget(self)
local node = nodePrefix .. self
local staging = node .. ':next'
local flat = redis.call('HGETALL', staging)
local total = 0
for i = 1, #flat, 2 do
  local n = tonumber(flat[i + 1])
  redis.call('HINCRBY', users, flat[i], n) -- n > 0: the mirror holds no empty uid
  total = total + n
end
redis.call('INCRBY', pages, total)
if #flat > 0 then
  redis.call('RENAME', staging, node)
  redis.call('PERSIST', node)
end
return 1
`;

/** Uids per STAGE call: bounded arguments and a short script, whatever the node holds. */
const STAGE_UIDS = 5000;

/** Removes this node and its pages, as if reaped. */
const LEAVE = `${PRELUDE}
forget(self)
redis.call('DEL', nodePrefix .. self .. ':next')
redis.call('ZREM', nodes, self)
return 1
`;

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
  private readonly timer: NodeJS.Timeout;
  /** The beat under way, awaited by close() so none writes after it. */
  private beating: Promise<void> | null = null;
  /** Redis may differ from the mirror (a write failed): the next beat writes the mirror whole. */
  private dirty = true;
  private registered = false;
  private failing = false;
  private closed: Promise<void> | null = null;

  /**
   * `nodeId` names this process in Redis: unique among live nodes (hostname, pid and a random
   * part, say); a node started with a dead node's id replaces that node's pages at its first beat.
   * The client is the caller's and stays open after close(). Commands go out on it in the
   * order they are made, which the mirror relies on: build it with disableOfflineQueue so a
   * write fails at once while Redis is away instead of waiting for it.
   */
  constructor(
    private readonly client: RedisClient,
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
    const p = (options.prefix ?? 'push:') + 'presence:';
    this.keys = [p + 'nodes', p + 'users', p + 'pages'];
    this.nodePrefix = p + 'node:';
    this.timer = setInterval(() => void this.beat(), this.heartbeatMs);
    this.timer.unref();
    void this.beat(); // registers at once, not a beat later
  }

  // Pages are counted, not named: the socket id is not needed.
  async addPage(uid: string, _socketId: string): Promise<boolean> {
    const n = (this.mirror.get(uid) ?? 0) + 1;
    this.mirror.set(uid, n);
    const { before, after } = await this.write(uid, n);
    return before === 0 && after > 0;
  }

  async removePage(uid: string, _socketId: string): Promise<boolean> {
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

  /** Stops the heartbeat and removes this node's pages from the cluster at once. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      clearInterval(this.timer);
      await this.beating;
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
    if (!this.client.isReady) {
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
        void this.beat();
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

  private beat(): Promise<void> {
    this.beating ??= this.renew().finally(() => (this.beating = null));
    return this.beating;
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
        this.registered = true;
      }
      if (this.failing) this.log.info(`presence: heartbeat of node ${this.nodeId} works again`);
      this.failing = false;
    } catch (err) {
      this.dirty = true;
      if (!this.failing) {
        const why = describe(err);
        this.log.warn(`presence: heartbeat of node ${this.nodeId} failed (${why}); retrying every ${this.heartbeatMs} ms`);
      }
      this.failing = true;
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
