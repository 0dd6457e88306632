// The Lua scripts of the Redis presence (redis-presence.ts), and the key layout and invariant
// they keep.
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
 * the node hashes are named inside. The prefix is `push:presence:` on one Redis (REDIS_URL)
 * and `{push:presence}:` on a Redis Cluster (REDIS_CLUSTER): the hash tag puts every key above
 * in one slot, so each script runs whole on one master, as the invariant needs (the totals sum
 * over every node and uid; a per-uid split would need a script per uid and per node). Its slot
 * differs from the store's `{push}`, so the two load two masters. docs/cluster.md.
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
export const HEARTBEAT = `${PRELUDE}
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
export const SET_PAGES = `${PRELUDE}
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
export const STAGE = `${PRELUDE}
local staging = nodePrefix .. self .. ':next'
if ARGV[4] == '1' then redis.call('DEL', staging) end
for i = 5, #ARGV, 2 do redis.call('HSET', staging, ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', staging, 10 * leaseMs)
return 1
`;

/** Replaces this node's entries with the staged ones (none staged: no entries). */
export const SWAP = `${PRELUDE}
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
export const STAGE_UIDS = 5000;

/** Removes this node and its pages, as if reaped. */
export const LEAVE = `${PRELUDE}
forget(self)
redis.call('DEL', nodePrefix .. self .. ':next')
redis.call('ZREM', nodes, self)
return 1
`;
