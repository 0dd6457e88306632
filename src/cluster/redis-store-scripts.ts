// The Lua scripts of the Redis message store (redis-store.ts), and the key layout they share.
// Each change that touches several keys is one script, so every node sees it whole and two
// nodes never claim the same due push at once.
import { createHash } from 'node:crypto';
import type { RedisCommands } from './redis-cluster-client.ts';

/**
 * A Lua script run by its SHA1, sent whole only when Redis does not know it (after a restart
 * or SCRIPT FLUSH). Scripts address keys from the prefix in ARGV[1]; KEYS[1] is one of them
 * (the counters hash), which routes the script to the master of their slot in a Redis Cluster.
 * There the prefix holds a hash tag (`{push}:`), so every key of the store is in that one slot.
 */
class LuaScript {
  private readonly sha: string;

  constructor(private readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  /** `key`: a key of the store (routes the script in a cluster); `args[0]` is the prefix. */
  async run(client: RedisCommands, key: string, args: readonly string[]): Promise<unknown> {
    const options = { keys: [key], arguments: [...args] };
    try {
      return await client.evalSha(this.sha, options);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return client.eval(this.source, options);
    }
  }
}

/*
 * Keys, after the prefix: `push:` on one Redis (REDIS_URL), `{push}:` on a Redis Cluster
 * (REDIS_CLUSTER). The hash tag puts the whole store in one slot, so each script below runs
 * on one master, atomically, as on one Redis: the byte bound (order, counters) and the expiry
 * sweep span every uid, and one push stores for many uids at once. docs/cluster.md
 * (Key layout) says why it is not split per uid.
 *   seq              INCR counter: the push order of every stored (uid, message) pair
 *   q:<uid>          ZSET message id -> seq: the uid's messages in push order
 *   m:<uid>          HASH message id -> StoredMessage JSON
 *   entries          HASH seq -> [uid, id, bytes] JSON: what to remove when a seq goes
 *   order            ZSET seq -> seq: every pair, oldest first (for the byte bound)
 *   expiry           ZSET seq -> expiresAt (for the sweep)
 *   counters         HASH bytes, keyBytes, scheduledBytes (dropped and expired are counted by
 *                    the node whose script removed them: see RedisMessageStore.stats)
 *   key:<id>         idempotency key: '' while its push runs (PXAT its lease), then the
 *                    answer's JSON (PXAT until)
 *   keys             ZSET id -> lease or until: every idempotency key, for its byte count (keyBytes)
 *   scheduled        ZSET push id -> when it is due: its at, or its claim's lease end
 *   specs            HASH push id -> ScheduledPush JSON (its length counts in scheduledBytes)
 *   claims           HASH push id -> '<claims made> <claim>' for a claimed push (claimDue)
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
 * Stores the message once per uid, then applies both bounds, oldest first. Returns [how many
 * uids it was stored for (a pair dropped at once by a bound still counts, as in memory), how
 * many pairs the bounds dropped].
 */
export const ADD = new LuaScript(`${REMOVE}
local body, id, expiresAt, bytes = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local maxPerUid, maxBytes = tonumber(ARGV[6]), tonumber(ARGV[7])
local kept, dropped = 0, 0
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
      dropped = dropped + 1
    end
  end
end
while tonumber(redis.call('HGET', p .. 'counters', 'bytes') or '0') > maxBytes do
  local oldest = redis.call('ZRANGE', p .. 'order', 0, 0)
  if #oldest == 0 then break end
  remove(oldest[1])
  dropped = dropped + 1
end
return {kept, dropped}
`);

/** ARGV: prefix, uid, id. 1 when the pair was there. */
export const ACK = new LuaScript(`${REMOVE}
local seq = redis.call('ZSCORE', p .. 'q:' .. ARGV[2], ARGV[3])
if not seq then return 0 end
remove(seq)
return 1
`);

/**
 * ARGV: prefix, now, limit. Removes up to `limit` pairs that expired by now. Returns
 * [how many, then uid and message JSON of each], so each expiry is reported once in a cluster.
 */
export const SWEEP = new LuaScript(`${REMOVE}
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
return out
`);

/**
 * ARGV: prefix, uid, after, limit, maxBytes, now. Where one page of pendingPage() is: {next
 * ('' when none follows), nextBytes ('' unless the page ended for want of room), then id and
 * bytes of each message in it}. It looks at `limit` + 1 ids after the cursor at most (the one
 * past the limit only tells whether more follow), and reads no message: the caller fetches the
 * page's JSON with one HMGET, which copies no string through Lua: a page of four 60 KB
 * messages took this script 52 µs and the HMGET 25 µs, where returning them from the script
 * took 392 µs. No command is long however many messages the uid has.
 */
export const PENDING_PAGE = new LuaScript(`
local p, uid, after = ARGV[1], ARGV[2], ARGV[3]
local limit, maxBytes, now = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local ids = redis.call('ZRANGEBYSCORE', p .. 'q:' .. uid, '(' .. after, '+inf', 'WITHSCORES', 'LIMIT', 0, limit + 1)
local out = {'', ''}
local bytes, next = 0, after
for i = 1, #ids, 2 do
  if (i + 1) / 2 > limit then
    out[1] = next
    return out
  end
  local id, seq = ids[i], ids[i + 1]
  local expiresAt = tonumber(redis.call('ZSCORE', p .. 'expiry', seq) or '0')
  local entry = redis.call('HGET', p .. 'entries', seq)
  if entry and expiresAt > now then
    local size = tonumber(cjson.decode(entry)[3])
    if bytes + size > maxBytes then
      out[1], out[2] = next, size
      return out
    end
    out[#out + 1] = id
    out[#out + 1] = size
    bytes = bytes + size
  end
  next = seq
end
return out
`);

/**
 * ARGV: prefix, uid, through, limit. Removes the uid's oldest pairs up to and including seq
 * `through`, at most `limit`; returns {id, expiresAt} of each.
 */
export const ACK_THROUGH = new LuaScript(`${REMOVE}
local uid = ARGV[2]
local ids = redis.call('ZRANGEBYSCORE', p .. 'q:' .. uid, '-inf', ARGV[3], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for i = 1, #ids, 2 do
  local expiresAt = redis.call('ZSCORE', p .. 'expiry', ids[i + 1]) or '0'
  if remove(ids[i + 1]) then
    out[#out + 1] = ids[i]
    out[#out + 1] = expiresAt
  end
end
return out
`);

/**
 * Shared by the idempotency-key scripts: an id costs what idempotencyKeyBytes() says (the
 * overhead is in ARGV[2]), and expired keys give their bytes back before a new one is counted.
 */
const KEYS_COMMON = `
local p, overhead = ARGV[1], tonumber(ARGV[2])
local function cost(id) return overhead + 2 * #id end
local function forget(id)
  if redis.call('ZREM', p .. 'keys', id) == 1 then redis.call('HINCRBY', p .. 'counters', 'keyBytes', -cost(id)) end
end
`;

/**
 * ARGV: prefix, overhead, id, lease end, now, maxIdempotencyBytes. Returns {1} when claimed,
 * {0, answer} when taken ('' while its push runs), {2} when the byte bound is reached.
 */
export const CLAIM = new LuaScript(`${KEYS_COMMON}
local id, untilMs, now, max = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local key = p .. 'key:' .. id
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', p .. 'keys', '-inf', now, 'LIMIT', 0, 1000)) do
  if redis.call('EXISTS', p .. 'key:' .. gone) == 0 then forget(gone) end
end
local held = redis.call('GET', key)
if held then return {0, held} end
local counted = redis.call('ZSCORE', p .. 'keys', id)
local used = tonumber(redis.call('HGET', p .. 'counters', 'keyBytes') or '0')
if not counted and used + cost(id) > max then return {2} end
redis.call('SET', key, '', 'PXAT', untilMs)
redis.call('ZADD', p .. 'keys', untilMs, id)
if not counted then redis.call('HINCRBY', p .. 'counters', 'keyBytes', cost(id)) end
return {1}
`);

/**
 * ARGV: prefix, id, answer JSON, until. Records the answer of the push that claimed the key and
 * holds the key until `until` (its claim held it for a lease only). A key gone (its lease ran
 * out) stays gone. 1 when recorded.
 */
export const SETTLE = new LuaScript(`
local p, id = ARGV[1], ARGV[2]
local key = p .. 'key:' .. id
if redis.call('EXISTS', key) == 0 then return 0 end
redis.call('SET', key, ARGV[3], 'PXAT', ARGV[4])
redis.call('ZADD', p .. 'keys', 'XX', ARGV[4], id)
return 1
`);

/** ARGV: prefix, overhead, id. 1 when an unsettled key was freed. */
export const RELEASE = new LuaScript(`${KEYS_COMMON}
local key = p .. 'key:' .. ARGV[3]
if redis.call('GET', key) ~= '' then return 0 end
redis.call('DEL', key)
forget(ARGV[3])
return 1
`);

/** Shared by the scripts that take a push out: `unschedule(id)` gives its bytes back. */
const UNSCHEDULE = `
local p = ARGV[1]
local function unschedule(id)
  local spec = redis.call('HGET', p .. 'specs', id)
  redis.call('ZREM', p .. 'scheduled', id)
  redis.call('HDEL', p .. 'claims', id)
  if not spec then return false end
  redis.call('HDEL', p .. 'specs', id)
  redis.call('HINCRBY', p .. 'counters', 'scheduledBytes', -#spec)
  return spec
end
`;

/**
 * ARGV: prefix, id, at, ScheduledPush JSON, maxScheduled, maxScheduledBytes, putBack (1/0).
 * 'scheduled', or which bound refused it: 'count' or 'bytes'. A push already waiting under
 * the id is replaced, a claim on it too (that claim's FIRED leaves the new push).
 */
export const SCHEDULE = new LuaScript(`${UNSCHEDULE}
local id, json = ARGV[2], ARGV[4]
local old = redis.call('HGET', p .. 'specs', id)
if ARGV[7] ~= '1' then
  if not old and redis.call('ZCARD', p .. 'scheduled') >= tonumber(ARGV[5]) then return 'count' end
  local used = tonumber(redis.call('HGET', p .. 'counters', 'scheduledBytes') or '0')
  if used - (old and #old or 0) + #json > tonumber(ARGV[6]) then return 'bytes' end
end
unschedule(id)
redis.call('ZADD', p .. 'scheduled', ARGV[3], id)
redis.call('HSET', p .. 'specs', id, json)
redis.call('HINCRBY', p .. 'counters', 'scheduledBytes', #json)
return 'scheduled'
`);

/** ARGV: prefix, id. 1 when it was waiting. */
export const CANCEL = new LuaScript(`${UNSCHEDULE}
return unschedule(ARGV[2]) and 1 or 0
`);

/**
 * ARGV: prefix, after's at ('' for the first page), after's id, limit, maxBytes. A page of
 * waiting pushes, soonest first (ties by id, as the sorted set orders them): {next at, next
 * id, then due time and JSON of each}, next '' on the last page. Reads only the page: the start
 * is found by rank (by score when the cursor's push is gone meanwhile).
 */
export const SCHEDULED = new LuaScript(`
local p = ARGV[1]
local set = p .. 'scheduled'
local limit, maxBytes = tonumber(ARGV[4]), tonumber(ARGV[5])
local start = 0
if ARGV[2] ~= '' then
  local at, id = tonumber(ARGV[2]), ARGV[3]
  local score = redis.call('ZSCORE', set, id)
  if score and tonumber(score) == at then
    start = redis.call('ZRANK', set, id) + 1
  else
    start = redis.call('ZCOUNT', set, '-inf', '(' .. ARGV[2])
    -- pushes at the cursor's own time come by id: skip those up to its id
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', set, ARGV[2], ARGV[2])) do
      if m <= id then start = start + 1 else break end
    end
  end
end
local out = {'', ''}
local bytes, taken, last = 0, 0, nil
local ids = redis.call('ZRANGE', set, start, start + limit, 'WITHSCORES')
for i = 1, #ids, 2 do
  local spec = redis.call('HGET', p .. 'specs', ids[i]) or '{}'
  if taken >= limit or (taken > 0 and bytes + #spec > maxBytes) then
    out[1], out[2] = last[2], last[1]
    return out
  end
  out[#out + 1] = ids[i + 1]
  out[#out + 1] = spec
  bytes, taken, last = bytes + #spec, taken + 1, {ids[i], ids[i + 1]}
end
return out
`);

/**
 * ARGV: prefix, now, lease end, limit, claim. Claims up to `limit` pushes due by now, soonest
 * first: each stays, due again at the lease's end, and counts one more claim. Returns {claims
 * made, JSON} for each. Reading and claiming in one script is what hands each due push to one
 * caller per lease, however many nodes claim at the same moment.
 */
export const CLAIM_DUE = new LuaScript(`
local p, lease, claim = ARGV[1], ARGV[3], ARGV[5]
local out = {}
local claimed = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'scheduled', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))) do
  local spec = redis.call('HGET', p .. 'specs', id)
  if spec then
    local held = redis.call('HGET', p .. 'claims', id)
    local claims = (held and tonumber(string.match(held, '^%d+')) or 0) + 1
    redis.call('HSET', p .. 'claims', id, claims .. ' ' .. claim)
    claimed[#claimed + 1] = id
    out[#out + 1] = claims
    out[#out + 1] = spec
  else
    redis.call('ZREM', p .. 'scheduled', id) -- not expected: the scripts keep them together
  end
end
-- moved after the loop: a lease that is not after now is not claimed twice in one call
for _, id in ipairs(claimed) do redis.call('ZADD', p .. 'scheduled', lease, id) end
return out
`);

/**
 * ARGV: prefix, then id and claim of each push made. Removes each push still under that
 * claim; one scheduled again or cancelled meanwhile is left as it is. Returns how many.
 */
export const FIRED = new LuaScript(`${UNSCHEDULE}
local removed = 0
for i = 2, #ARGV - 1, 2 do
  local held = redis.call('HGET', p .. 'claims', ARGV[i])
  if held and string.match(held, '^%d+ (.*)$') == ARGV[i + 1] then
    unschedule(ARGV[i])
    removed = removed + 1
  end
end
return removed
`);
