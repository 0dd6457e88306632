// The MessageStore in Redis, shared by every node of a cluster: kept messages, idempotency
// keys and scheduled pushes, with the semantics of MemoryMessageStore. Each change that
// touches several keys is one Lua script, so every node sees it whole and two nodes never
// take the same due push.
import { createHash } from 'node:crypto';
import type { PushResult } from './delivery.ts';
import type { Logger } from './log.ts';
import type {
  ClaimResult,
  MessageStore,
  ScheduledPush,
  StoredMessage,
  ExpiredListener,
  StoreLimits,
  StoreStats,
} from './message-store.ts';
import type { RedisClient } from './redis.ts';

export interface RedisStoreOptions {
  /**
   * Put before every key, so several stores (or test runs) can share one Redis.
   * @default 'push:'
   */
  prefix?: string;
  /** Told of each message that expired unacked (the sweep script hands each out once). */
  onExpired?: ExpiredListener;
}

/** How often expired messages are swept, ms (as MemoryMessageStore). */
const SWEEP_MS = 1000;
/** Expired entries removed by one sweep script, so one sweep never blocks Redis for long. */
const SWEEP_BATCH = 1000;

/**
 * A Lua script run by its SHA1, sent whole only when Redis does not know it (after a restart
 * or SCRIPT FLUSH). Scripts address keys from the prefix in ARGV[1]: a single Redis, or a
 * Redis Cluster only with a prefix holding a hash tag (`{push}:`), which puts every key in
 * one slot.
 */
class LuaScript {
  private readonly sha: string;

  constructor(private readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(client: RedisClient, args: readonly string[]): Promise<unknown> {
    const options = { keys: [], arguments: [...args] };
    try {
      return await client.evalSha(this.sha, options);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return client.eval(this.source, options);
    }
  }
}

/*
 * Keys, after the prefix:
 *   seq              INCR counter: the push order of every stored (uid, message) pair
 *   q:<uid>          ZSET message id -> seq: the uid's messages in push order
 *   m:<uid>          HASH message id -> StoredMessage JSON
 *   entries          HASH seq -> [uid, id, bytes] JSON: what to remove when a seq goes
 *   order            ZSET seq -> seq: every pair, oldest first (for the byte bound)
 *   expiry           ZSET seq -> expiresAt (for the sweep)
 *   counters         HASH bytes, dropped, expired
 *   key:<id>         idempotency key: '' while its push runs, then the answer's JSON; PXAT until
 *   scheduled        ZSET push id -> at
 *   specs            HASH push id -> ScheduledPush JSON
 * A pair is in q, m, entries, order and expiry, or in none: only the scripts below change them.
 */

/** Shared by the scripts that remove pairs: `remove(seq)` takes one pair out of every key. */
const REMOVE = `
local p = ARGV[1]
local function remove(seq)
  local entry = redis.call('HGET', p .. 'entries', seq)
  if not entry then return false end
  local uid, id, bytes = unpack(cjson.decode(entry))
  redis.call('HDEL', p .. 'entries', seq)
  redis.call('ZREM', p .. 'order', seq)
  redis.call('ZREM', p .. 'expiry', seq)
  redis.call('ZREM', p .. 'q:' .. uid, id)
  redis.call('HDEL', p .. 'm:' .. uid, id)
  redis.call('HINCRBY', p .. 'counters', 'bytes', -bytes)
  return true
end
`;

/**
 * ARGV: prefix, message JSON, message id, expiresAt, bytes, maxPendingPerUid, maxBytes, uid...
 * Stores the message once per uid, then applies both bounds, oldest first. Returns how many
 * uids it was stored for (a pair dropped at once by a bound still counts, as in memory).
 */
const ADD = new LuaScript(`${REMOVE}
local body, id, expiresAt, bytes = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local maxPerUid, maxBytes = tonumber(ARGV[6]), tonumber(ARGV[7])
local kept = 0
for i = 8, #ARGV do
  local uid = ARGV[i]
  local queue = p .. 'q:' .. uid
  if not redis.call('ZSCORE', queue, id) then
    local seq = redis.call('INCR', p .. 'seq')
    redis.call('ZADD', queue, seq, id)
    redis.call('HSET', p .. 'm:' .. uid, id, body)
    redis.call('HSET', p .. 'entries', seq, cjson.encode({uid, id, bytes}))
    redis.call('ZADD', p .. 'order', seq, seq)
    redis.call('ZADD', p .. 'expiry', expiresAt, seq)
    redis.call('HINCRBY', p .. 'counters', 'bytes', bytes)
    kept = kept + 1
    if redis.call('ZCARD', queue) > maxPerUid then
      local oldest = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
      remove(oldest[2])
      redis.call('HINCRBY', p .. 'counters', 'dropped', 1)
    end
  end
end
while tonumber(redis.call('HGET', p .. 'counters', 'bytes') or '0') > maxBytes do
  local oldest = redis.call('ZRANGE', p .. 'order', 0, 0)
  if #oldest == 0 then break end
  remove(oldest[1])
  redis.call('HINCRBY', p .. 'counters', 'dropped', 1)
end
return kept
`);

/** ARGV: prefix, uid, id. 1 when the pair was there. */
const ACK = new LuaScript(`${REMOVE}
local seq = redis.call('ZSCORE', p .. 'q:' .. ARGV[2], ARGV[3])
if not seq then return 0 end
remove(seq)
return 1
`);

/**
 * ARGV: prefix, now, limit. Removes up to `limit` pairs that expired by now. Returns
 * [how many, then uid and message JSON of each], so each expiry is reported once in a cluster.
 */
const SWEEP = new LuaScript(`${REMOVE}
local due = redis.call('ZRANGEBYSCORE', p .. 'expiry', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {#due}
for _, seq in ipairs(due) do
  local entry = redis.call('HGET', p .. 'entries', seq)
  if entry then
    local e = cjson.decode(entry)
    out[#out + 1] = e[1]
    out[#out + 1] = redis.call('HGET', p .. 'm:' .. e[1], e[2]) or ''
  end
  remove(seq)
end
if #due > 0 then redis.call('HINCRBY', p .. 'counters', 'expired', #due) end
return out
`);

/** ARGV: prefix, uid. The uid's message JSONs in push order (expired ones included). */
const PENDING = new LuaScript(`
local p, uid = ARGV[1], ARGV[2]
local out = {}
for _, id in ipairs(redis.call('ZRANGE', p .. 'q:' .. uid, 0, -1)) do
  out[#out + 1] = redis.call('HGET', p .. 'm:' .. uid, id)
end
return out
`);

/** ARGV: prefix, id, at, ScheduledPush JSON, maxScheduled. 0 when the limit is reached. */
const SCHEDULE = new LuaScript(`
local p = ARGV[1]
if redis.call('ZCARD', p .. 'scheduled') >= tonumber(ARGV[5]) then return 0 end
redis.call('ZADD', p .. 'scheduled', ARGV[3], ARGV[2])
redis.call('HSET', p .. 'specs', ARGV[2], ARGV[4])
return 1
`);

/** ARGV: prefix, id. 1 when it was waiting. */
const CANCEL = new LuaScript(`
local p = ARGV[1]
redis.call('HDEL', p .. 'specs', ARGV[2])
return redis.call('ZREM', p .. 'scheduled', ARGV[2])
`);

/** ARGV: prefix. Every waiting push's JSON, soonest first. */
const SCHEDULED = new LuaScript(`
local p = ARGV[1]
local out = {}
for _, id in ipairs(redis.call('ZRANGE', p .. 'scheduled', 0, -1)) do
  out[#out + 1] = redis.call('HGET', p .. 'specs', id)
end
return out
`);

/**
 * ARGV: prefix, now. Removes and returns the pushes due by now, soonest first. Reading and
 * removing in one script is what makes each due push go to exactly one caller, however many
 * nodes call at the same moment.
 */
const TAKE_DUE = new LuaScript(`
local p = ARGV[1]
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'scheduled', '-inf', ARGV[2])) do
  local spec = redis.call('HGET', p .. 'specs', id)
  redis.call('ZREM', p .. 'scheduled', id)
  redis.call('HDEL', p .. 'specs', id)
  if spec then out[#out + 1] = spec end
end
return out
`);

function toStrings(reply: unknown): string[] {
  if (!Array.isArray(reply)) throw new Error(`unexpected reply from Redis: ${String(reply)}`);
  // a null would be a hash field missing for a sorted-set member: the scripts keep them
  // together, so none is expected; skipped rather than parsed
  return reply.filter((item): item is string => typeof item === 'string');
}

function toNumber(reply: unknown): number {
  const n = Number(reply);
  if (reply === null || !Number.isFinite(n)) throw new Error(`unexpected reply from Redis: ${String(reply)}`);
  return n;
}

/** A ms time as Redis wants it: an integer. */
function ms(time: number): string {
  return String(Math.ceil(time));
}

export class RedisMessageStore implements MessageStore {
  private readonly prefix: string;
  private readonly sweeper: NodeJS.Timeout;
  private readonly onExpired: ExpiredListener;
  /** The sweep under way, awaited by close() so none runs on a client the caller closes next. */
  private sweeping: Promise<void> | null = null;
  private sweepFailing = false;

  /** The client is the caller's: close() leaves it open. */
  constructor(
    private readonly client: RedisClient,
    private readonly limits: StoreLimits,
    private readonly log: Logger,
    options: RedisStoreOptions = {},
  ) {
    this.prefix = options.prefix ?? 'push:';
    this.onExpired = options.onExpired ?? (() => {});
    this.sweeper = setInterval(() => {
      this.sweeping ??= this.tick().finally(() => (this.sweeping = null));
    }, SWEEP_MS);
    this.sweeper.unref();
  }

  async add(uids: readonly string[], message: StoredMessage, bytes: number): Promise<number> {
    if (uids.length === 0) return 0;
    const { maxPendingPerUid, maxBytes } = this.limits;
    const reply = await ADD.run(this.client, [
      this.prefix,
      JSON.stringify(message),
      message.id,
      ms(message.expiresAt),
      String(Math.ceil(bytes)),
      String(maxPendingPerUid),
      String(maxBytes),
      ...uids,
    ]);
    return toNumber(reply);
  }

  async pending(uid: string): Promise<StoredMessage[]> {
    const now = Date.now();
    const reply = await PENDING.run(this.client, [this.prefix, uid]);
    return toStrings(reply)
      .map((json) => JSON.parse(json) as StoredMessage)
      .filter((m) => m.expiresAt > now);
  }

  async ack(uid: string, id: string): Promise<boolean> {
    return toNumber(await ACK.run(this.client, [this.prefix, uid, id])) === 1;
  }

  async claim(id: string, until: number): Promise<ClaimResult> {
    // NX + GET: sets the key when it is free and answers what it held when it is taken, in
    // one command. A key whose time is already past is free again at once, as in memory.
    const held = await this.client.set(this.key(id), '', {
      condition: 'NX',
      GET: true,
      expiration: { type: 'PXAT', value: Math.max(1, Math.ceil(until)) },
    });
    if (held === null) return { first: true };
    return { first: false, result: held === '' ? null : (JSON.parse(held) as PushResult | { id: string; at: number }) };
  }

  async settle(id: string, result: PushResult | { id: string; at: number }): Promise<void> {
    // XX: a key that expired meanwhile stays forgotten; KEEPTTL: it keeps its claimed time
    await this.client.set(this.key(id), JSON.stringify(result), { condition: 'XX', expiration: 'KEEPTTL' });
  }

  async schedule(push: ScheduledPush): Promise<boolean> {
    const args = [this.prefix, push.spec.id, ms(push.at), JSON.stringify(push), String(this.limits.maxScheduled)];
    return toNumber(await SCHEDULE.run(this.client, args)) === 1;
  }

  async cancel(id: string): Promise<boolean> {
    return toNumber(await CANCEL.run(this.client, [this.prefix, id])) === 1;
  }

  async scheduled(): Promise<ScheduledPush[]> {
    return toStrings(await SCHEDULED.run(this.client, [this.prefix])).map((json) => JSON.parse(json) as ScheduledPush);
  }

  async takeDue(now: number): Promise<ScheduledPush[]> {
    const reply = await TAKE_DUE.run(this.client, [this.prefix, String(Math.floor(now))]);
    return toStrings(reply).map((json) => JSON.parse(json) as ScheduledPush);
  }

  async stats(): Promise<StoreStats> {
    const p = this.prefix;
    const [messages, counters, scheduled] = await this.client
      .multi()
      .zCard(p + 'order')
      .hmGet(p + 'counters', ['bytes', 'dropped', 'expired'])
      .zCard(p + 'scheduled')
      .exec();
    const [bytes, dropped, expired] = Array.isArray(counters) ? counters : [];
    return {
      messages: Number(messages),
      bytes: Number(bytes ?? 0),
      dropped: Number(dropped ?? 0),
      expired: Number(expired ?? 0),
      scheduled: Number(scheduled),
    };
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await this.sweeping;
  }

  /**
   * Removes the pairs expired by `now` and counts them; any node may run it at any time
   * (each pair is removed once). Resolves how many it removed.
   */
  async sweep(now: number): Promise<number> {
    let removed = 0;
    for (;;) {
      const reply = await SWEEP.run(this.client, [this.prefix, String(Math.floor(now)), String(SWEEP_BATCH)]);
      if (!Array.isArray(reply)) throw new Error(`unexpected reply from Redis: ${String(reply)}`);
      const [count, ...pairs] = reply.map(String);
      const n = Number(count);
      for (let i = 0; i + 1 < pairs.length; i += 2) {
        if (pairs[i + 1] === '') continue;
        this.onExpired(pairs[i]!, JSON.parse(pairs[i + 1]!) as StoredMessage);
      }
      removed += n;
      if (n < SWEEP_BATCH) return removed;
    }
  }

  private async tick(): Promise<void> {
    try {
      await this.sweep(Date.now());
      if (this.sweepFailing) this.log.info('message store: sweeping expired messages works again');
      this.sweepFailing = false;
    } catch (err) {
      // once per failure spell, not once a second while Redis is away
      if (!this.sweepFailing) {
        this.log.warn(`message store: sweeping expired messages failed (${describe(err)}); retrying every ${SWEEP_MS} ms`);
      }
      this.sweepFailing = true;
    }
  }

  private key(id: string): string {
    return `${this.prefix}key:${id}`;
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
