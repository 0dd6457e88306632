// Every setting: its variable, default, meaning and the schema that checks its value. The
// Config type (config.ts) is derived from this table; --help prints it.
import { z } from 'zod';
import { parseProxyEntry } from './client-address.ts';
import { shownUrl } from './secrets.ts';

const PORT_MESSAGE = 'must be an integer 0-65535';

const port = z
  .string()
  .regex(/^\d{1,5}$/, PORT_MESSAGE)
  .transform(Number)
  .refine((n) => n <= 65535, PORT_MESSAGE);

/** A port, or `off` to disable that listener (null). */
const optionalPort = z.union([z.literal('off').transform(() => null), port]);

const positiveInt = (max: number) =>
  z
    .string()
    .regex(/^\d+$/, `must be an integer 1-${max}`)
    .transform(Number)
    .refine((n) => n >= 1 && n <= max, `must be an integer 1-${max}`);

/** `*` (any origin, without credentials: cors.ts) or a comma-separated list of origins. */
const origins = z
  .string()
  .transform((s) => s.trim())
  .transform((s): '*' | string[] =>
    s === '*' ? '*' : s.split(',').map((o) => o.trim()).filter((o) => o !== ''),
  )
  .refine((v) => v === '*' || v.length > 0, 'must be * or a comma-separated list of origins')
  .refine(
    (v) => v === '*' || v.every((o) => /^https?:\/\/[^/\s]+$/.test(o)),
    'must be * or origins like https://example.com (scheme and host, no path)',
  );

const host = z.string().min(1, 'must not be empty');

/** A shared secret, or empty for none (null). Short secrets are guessable: refused. */
const secret = z
  .string()
  .transform((s) => (s === '' ? null : s))
  .refine((s) => s === null || s.length >= 16, 'must be at least 16 characters (or empty for none)');

/** A file path, or empty for none (null); read at start. */
const optionalPath = z.string().transform((s) => (s === '' ? null : s));

/** A redis:// or rediss:// URL, or empty for none (null). */
const redisUrl = z
  .string()
  .transform((s) => (s === '' ? null : s))
  .refine((s) => s === null || /^rediss?:\/\/[^\s]+$/.test(s), 'must be a redis:// or rediss:// URL (or empty for one node)');

/**
 * Comma-separated seed nodes of a Redis Cluster (`host:port`, or redis:// / rediss:// URLs),
 * or empty for none. One reachable seed is enough to find the others.
 */
const redisSeeds = z
  .string()
  .transform((s) => s.split(',').map((n) => n.trim()).filter((n) => n !== ''))
  .refine(
    (list) => list.length <= 64 && list.every((n) => /^rediss?:\/\/[^\s,]+$/.test(n) || /^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9A-Fa-f:.]+\]:\d{1,5}$/.test(n)),
    'must be seed nodes separated by commas, each host:port or a redis:// / rediss:// URL (at most 64), or empty for none',
  );

/** `host:port` (a name, an IPv4 address or a bracketed IPv6 one) with a port 1-65535. */
export function parseHostPort(entry: string): { host: string; port: number } | null {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(entry);
  if (!match) return null;
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return null;
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}

/** Comma-separated sentinel addresses (`host:port`), or empty for none. */
const sentinelList = z
  .string()
  .transform((s) => s.split(',').map((a) => a.trim()).filter((a) => a !== ''))
  .superRefine((list, ctx) => {
    const bad = list.find((a) => parseHostPort(a) === null);
    if (bad !== undefined) {
      ctx.addIssue({
        code: 'custom',
        // by its position, not its text: a URL pasted here may carry a password
        message: `must be sentinel addresses host:port separated by commas (like 10.0.0.5:26379,10.0.0.6:26379); entry ${list.indexOf(bad) + 1} is not one`,
      });
    }
  })
  .transform((list) => list.map((a) => parseHostPort(a)!));

/** A Sentinel master name, or empty for none (null): printable, no spaces (Sentinel splits its messages on them). */
const masterName = z
  .string()
  .transform((s) => (s === '' ? null : s))
  .refine((s) => s === null || /^[\x21-\x7e]{1,200}$/.test(s), 'must be the master name the sentinels monitor: 1-200 printable characters, no spaces');

/**
 * A password someone else chose (Redis's requirepass or an ACL user's), or empty for none
 * (null): any length, but no line breaks or control characters. Never shown.
 */
const password = z
  .string()
  .transform((s) => (s === '' ? null : s))
  .refine((s) => s === null || !/[\x00-\x1f\x7f]/.test(s), 'must not hold control characters or line breaks');

/** Comma-separated http(s) URLs, or empty for none. */
const urlList = z
  .string()
  .transform((s) => s.split(',').map((u) => u.trim()).filter((u) => u !== ''))
  .refine((list) => list.every((u) => /^https?:\/\/[^\s]+$/.test(u)), 'must be http(s) URLs separated by commas');

/** Comma-separated proxy addresses or CIDRs, IPv4 or IPv6; empty for none. */
const proxyList = z
  .string()
  .transform((s) => s.split(',').map((p) => p.trim()).filter((p) => p !== ''))
  .superRefine((list, ctx) => {
    const bad = list.find((p) => parseProxyEntry(p) === null);
    if (bad !== undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `must be proxy addresses or CIDRs separated by commas (like 127.0.0.1,10.0.0.0/8,::1); ${JSON.stringify(bad)} is not one`,
      });
    }
  });

/** Comma-separated topic patterns: topic characters and `*` (any run of them); empty for none. */
const topicPatterns = z
  .string()
  .transform((s) => s.split(',').map((p) => p.trim()).filter((p) => p !== ''))
  .refine(
    (list) => list.every((p) => /^[A-Za-z0-9_.:@\/*-]{1,128}$/.test(p)),
    'must be topic patterns separated by commas: letters, digits, _ . : @ / - and * (any characters), e.g. chat-*',
  );

/** An integer >= 0 where 0 turns the limit off. */
const limitOrOff = (max: number) =>
  z
    .string()
    .regex(/^\d+$/, `must be an integer 0-${max} (0 = no limit)`)
    .transform(Number)
    .refine((n) => n <= max, `must be an integer 0-${max} (0 = no limit)`);

interface Setting<S extends z.ZodType<unknown, string>> {
  env: string;
  default: string;
  doc: string;
  schema: S;
}

function setting<S extends z.ZodType<unknown, string>>(
  env: string,
  defaultValue: string,
  doc: string,
  schema: S,
): Setting<S> {
  return { env, default: defaultValue, doc, schema };
}

/** Every setting: its variable, default and meaning. The Config type is derived from this. */
export const SETTINGS = {
  host: setting('HOST', '0.0.0.0', 'address every listener binds to', host),
  ioPort: setting('IO_PORT', '2120', 'Socket.IO port (0 = any free port)', port),
  apiPort: setting('API_PORT', '2121', 'HTTP push API port (0 = any free port)', port),
  webPort: setting(
    'WEB_PORT',
    '2123',
    'demo page port (0 = any free port, off = no demo page)',
    optionalPort,
  ),
  corsOrigins: setting(
    'CORS_ORIGINS',
    '*',
    'origins allowed to open a Socket.IO connection or an SSE stream: * (any, without credentials but for socket.io-client 2.x) or a comma-separated list (with credentials)',
    origins,
  ),
  headersTimeoutMs: setting(
    'HEADERS_TIMEOUT_MS',
    '10000',
    'longest a client may take to send a request line and headers, on every port; past it the connection is cut (checked every second)',
    positiveInt(600_000).refine((n) => n >= 1000, 'must be an integer 1000-600000'),
  ),
  requestTimeoutMs: setting(
    'REQUEST_TIMEOUT_MS',
    '30000',
    'longest a client may take to send a whole request, body included, on every port (not the answer: long-polls and SSE streams last longer); at least HEADERS_TIMEOUT_MS',
    positiveInt(3_600_000).refine((n) => n >= 1000, 'must be an integer 1000-3600000'),
  ),
  maxBodyBytes: setting(
    'MAX_BODY_BYTES',
    '1048576',
    'largest push request body in bytes; larger answers 413',
    positiveInt(64 * 1024 * 1024),
  ),
  maxRememberedSignatures: setting(
    'MAX_REMEMBERED_SIGNATURES',
    '100000',
    'signed push requests remembered against replay, each until its timestamp is 5 minutes old (about 170 bytes each); when full a new signed request answers 503',
    positiveInt(10_000_000),
  ),
  maxSocketMessageBytes: setting(
    'MAX_SOCKET_MESSAGE_BYTES',
    '65536',
    'largest message a Socket.IO client may send, in bytes; larger closes that connection',
    positiveInt(16 * 1024 * 1024),
  ),
  maxUidsPerPush: setting(
    'MAX_UIDS_PER_PUSH',
    '1000',
    'uids one v1 push may name in `to`',
    positiveInt(100_000),
  ),
  maxBatchMessages: setting(
    'MAX_BATCH_MESSAGES',
    '100',
    'messages one /api/v1/push/batch request may hold',
    positiveInt(10_000),
  ),
  maxDataBytes: setting(
    'MAX_DATA_BYTES',
    '65536',
    'largest v1 `data` (as JSON) in bytes; larger answers 413',
    positiveInt(16 * 1024 * 1024),
  ),
  maxTtlSeconds: setting(
    'MAX_TTL_SECONDS',
    '604800',
    'longest a stored message is kept; a larger ttl is cut to this',
    positiveInt(365 * 86400),
  ),
  maxPendingPerUid: setting(
    'MAX_PENDING_PER_UID',
    '1000',
    'stored messages kept per uid; past it the oldest is dropped (and counted)',
    positiveInt(1_000_000),
  ),
  maxStoreBytes: setting(
    'MAX_STORE_BYTES',
    '67108864',
    'bytes of stored messages in all, each (uid, message) counted as its data size plus 450; past it the oldest are dropped (STORE=embedded: it bounds its file too, within about 10%; a file grown larger before never shrinks)',
    positiveInt(64 * 1024 * 1024 * 1024),
  ),
  maxScheduled: setting(
    'MAX_SCHEDULED',
    '10000',
    'scheduled pushes waiting at once; past it a new one answers 503',
    positiveInt(10_000_000),
  ),
  maxScheduledBytes: setting(
    'MAX_SCHEDULED_BYTES',
    '67108864',
    'bytes (as JSON: to list, data and all) the waiting scheduled pushes may hold in all; past it a new one answers 503',
    positiveInt(64 * 1024 * 1024 * 1024),
  ),
  maxIdempotencyBytes: setting(
    'MAX_IDEMPOTENCY_BYTES',
    '33554432',
    'estimated bytes the remembered push ids may hold in all; past it a push with a new id answers 503 (none is forgotten early)',
    positiveInt(64 * 1024 * 1024 * 1024),
  ),
  maxScheduleSeconds: setting(
    'MAX_SCHEDULE_SECONDS',
    '2592000',
    'how far ahead a push may be scheduled (delay or at)',
    positiveInt(365 * 86400),
  ),
  idempotencySeconds: setting(
    'IDEMPOTENCY_SECONDS',
    '300',
    'least time a push id is remembered (longer when its ttl or schedule is longer)',
    positiveInt(30 * 86400),
  ),
  ackTimeoutMs: setting(
    'ACK_TIMEOUT_MS',
    '30000',
    'how long the server waits for a stored message ack before it stops waiting (the message stays stored)',
    positiveInt(3_600_000),
  ),
  redeliveryWindow: setting(
    'REDELIVERY_WINDOW',
    '20',
    'stored messages sent to a page at login before it acks them; the next go as acks come (or ACK_TIMEOUT_MS passes)',
    positiveInt(10_000),
  ),
  redeliveryWindowBytes: setting(
    'REDELIVERY_WINDOW_BYTES',
    '262144',
    'most bytes of stored messages (data as JSON) sent to a page at login before it acks them; one message always goes',
    positiveInt(1024 * 1024 * 1024),
  ),
  maxRedeliveryBytes: setting(
    'MAX_REDELIVERY_BYTES',
    '67108864',
    'bytes of stored messages (counted as for MAX_STORE_BYTES) read or held at once for redelivery, over every login and SSE replay; one uid may hold an eighth of it, one client address a quarter; past it a redelivery waits its turn (the login is answered)',
    positiveInt(64 * 1024 * 1024 * 1024),
  ),
  maxSocketBufferBytes: setting(
    'MAX_SOCKET_BUFFER_BYTES',
    '4194304',
    'most bytes waiting to be sent to one connection (Socket.IO or an SSE stream at /events); a connection that does not read past it is disconnected',
    positiveInt(1024 * 1024 * 1024),
  ),
  loginTimeoutMs: setting(
    'LOGIN_TIMEOUT_MS',
    '10000',
    'longest a login may wait on presence and the store; past it the login is undone and answers `unavailable`',
    positiveInt(600_000),
  ),
  maxTopicsPerSocket: setting(
    'MAX_TOPICS_PER_SOCKET',
    '100',
    'topics one connection may be subscribed to at once',
    positiveInt(100_000),
  ),
  maxStatusBytes: setting(
    'MAX_STATUS_BYTES',
    '16777216',
    'estimated bytes the message statuses (GET /api/v1/messages/:id) may hold in this process; past it the oldest are forgotten first (their id answers 404)',
    positiveInt(64 * 1024 * 1024 * 1024),
  ),
  statusSeconds: setting(
    'STATUS_SECONDS',
    '3600',
    'how long a message status is kept: a fire-and-forget push\'s after it was made, a stored message\'s after its ttl ends',
    positiveInt(30 * 86400),
  ),
  clientPublishTopics: setting(
    'CLIENT_PUBLISH_TOPICS',
    '',
    'topic patterns (comma-separated, * matches any characters, e.g. chat-*) whose subscribers may send messages to each other with `publish`; empty = off',
    topicPatterns,
  ),
  maxClientMessageBytes: setting(
    'MAX_CLIENT_MESSAGE_BYTES',
    '4096',
    'largest `data` (as JSON) a client may publish to a topic; larger is refused',
    positiveInt(1024 * 1024),
  ),
  clientPublishPerSecond: setting(
    'CLIENT_PUBLISH_PER_SECOND',
    '5',
    'messages a uid may publish to topics a second, over all its sockets on a node (bursts of twice that); a topic takes at most 20 times that from all its publishers',
    positiveInt(100_000),
  ),
  pushSecret: setting(
    'PUSH_SECRET',
    '',
    'secret every push must prove (Bearer header, secret field or HMAC signature); empty = anyone may push',
    secret,
  ),
  loginSecret: setting(
    'LOGIN_SECRET',
    '',
    'secret login tokens are signed with (HMAC of the uid, or HS256 JWT); empty = any page may log in as any uid',
    secret,
  ),
  pushRatePerIp: setting(
    'PUSH_RATE_PER_IP',
    '0',
    'API requests per second per client address, bursts up to twice that; over it answers 429 (0 = no limit); per worker under WORKERS',
    limitOrOff(1_000_000),
  ),
  socketEventsPerSecond: setting(
    'SOCKET_EVENTS_PER_SECOND',
    '20',
    'events per second one connection may send, bursts up to twice that; over it the event is refused',
    positiveInt(100_000),
  ),
  maxConnectionsPerIp: setting(
    'MAX_CONNECTIONS_PER_IP',
    '1000',
    'connections open at once from one address on the Socket.IO port, Socket.IO and SSE streams (/events) together, over all WORKERS (0 = no limit)',
    limitOrOff(10_000_000),
  ),
  trustProxy: setting(
    'TRUST_PROXY',
    '',
    'proxies (addresses or CIDRs, comma-separated) whose X-Forwarded-For names the client for per-address limits and logs; empty = trust none',
    proxyList,
  ),
  tlsCert: setting('TLS_CERT', '', 'PEM certificate file: serve https and wss on every port (with TLS_KEY)', optionalPath),
  tlsKey: setting('TLS_KEY', '', 'PEM private key file for TLS_CERT', optionalPath),
  logLevel: setting(
    'LOG_LEVEL',
    'info',
    'least important log lines shown: info, warn or error',
    z.enum(['info', 'warn', 'error'], { error: 'must be info, warn or error' }),
  ),
  logFormat: setting(
    'LOG_FORMAT',
    'text',
    'text (lines for people) or json (one JSON object a line, for log collectors)',
    z.enum(['text', 'json'], { error: 'must be text or json' }),
  ),
  accessLog: setting(
    'ACCESS_LOG',
    'off',
    'on: one JSON line per push API request on stdout (time, method, path without its query, status, duration, client address); never a secret, token or content',
    z.enum(['on', 'off'], { error: 'must be on or off' }).transform((v) => v === 'on'),
  ),
  store: setting(
    'STORE',
    'embedded',
    'where a single node keeps stored messages, push ids and scheduled pushes: embedded (on disk in DATA_DIR, kept across restarts and crashes) or memory (lost on restart); REDIS_URL or REDIS_SENTINELS overrides it',
    z.enum(['memory', 'embedded'], { error: 'must be memory or embedded' }),
  ),
  dataDir: setting(
    'DATA_DIR',
    './data',
    'with STORE=embedded: the directory of the store (relative to the working directory), created when missing; one server at a time',
    z.string().min(1, 'must not be empty'),
  ),
  storeCheckMs: setting(
    'STORE_CHECK_MS',
    '10000',
    'with STORE=embedded: how long the check at start may walk the store for damage (about 1.5 s for a full 64 MiB store); past it the server starts with the rest unchecked; 0 = no check',
    z.string().regex(/^\d+$/, 'must be an integer 0-600000').transform(Number).refine((n) => n <= 600_000, 'must be an integer 0-600000'),
  ),
  redisUrl: setting(
    'REDIS_URL',
    '',
    'Redis to join a cluster through (rooms, presence, stored messages); empty = one node (stored messages as STORE says)',
    redisUrl,
  ),
  redisCluster: setting(
    'REDIS_CLUSTER',
    '',
    'seed nodes of a Redis Cluster (7+) to join a cluster through, comma-separated host:port or redis:// URLs; instead of REDIS_URL. Sharded pub/sub; see docs/cluster.md',
    redisSeeds,
  ),
  redisSentinels: setting(
    'REDIS_SENTINELS',
    '',
    'instead of REDIS_URL: the Redis Sentinels (host:port, comma-separated) that name the master of REDIS_SENTINEL_MASTER; the nodes follow a failover by themselves',
    sentinelList,
  ),
  redisSentinelMaster: setting(
    'REDIS_SENTINEL_MASTER',
    '',
    'with REDIS_SENTINELS: the master name the sentinels monitor (`sentinel monitor <name> ...`)',
    masterName,
  ),
  redisPassword: setting(
    'REDIS_PASSWORD',
    '',
    'with REDIS_SENTINELS: the password of the master (its requirepass); REDIS_URL carries its own',
    password,
  ),
  redisSentinelPassword: setting(
    'REDIS_SENTINEL_PASSWORD',
    '',
    'with REDIS_SENTINELS: the password of the sentinels (their requirepass), when they have one',
    password,
  ),
  redisTls: setting(
    'REDIS_TLS',
    'off',
    'with REDIS_SENTINELS: on = TLS to the master the sentinels name (REDIS_URL and REDIS_CLUSTER say it by rediss://)',
    z.enum(['on', 'off'], { error: 'must be on or off' }).transform((v) => v === 'on'),
  ),
  redisSentinelTls: setting(
    'REDIS_SENTINEL_TLS',
    'off',
    'with REDIS_SENTINELS: on = TLS to the sentinels; apart from REDIS_TLS, as some run TLS on the data nodes only',
    z.enum(['on', 'off'], { error: 'must be on or off' }).transform((v) => v === 'on'),
  ),
  redisTlsCa: setting(
    'REDIS_TLS_CA',
    '',
    "PEM file of the CA certificates a TLS Redis's certificate must be signed by (rediss:// URLs, REDIS_TLS, REDIS_SENTINEL_TLS); empty = the system's CAs",
    optionalPath,
  ),
  redisCommandTimeoutMs: setting(
    'REDIS_COMMAND_TIMEOUT_MS',
    '2000',
    'with REDIS_URL, REDIS_CLUSTER or REDIS_SENTINELS: a Redis that leaves a command unanswered this long counts as lost (pushes that need it answer 503, /readyz 503) and is reconnected',
    z
      .string()
      .regex(/^\d+$/, 'must be an integer 100-600000')
      .transform(Number)
      .refine((n) => n >= 100 && n <= 600_000, 'must be an integer 100-600000'),
  ),
  workers: setting(
    'WORKERS',
    '1',
    'server processes on this machine sharing the ports (above 1 needs REDIS_URL, REDIS_CLUSTER or REDIS_SENTINELS)',
    positiveInt(256),
  ),
  webhookUrl: setting(
    'WEBHOOK_URL',
    '',
    'URLs (comma-separated) that receive user.online / user.offline / message.stored_expired events as signed JSON POSTs; empty = none',
    urlList,
  ),
  webhookSecret: setting('WEBHOOK_SECRET', '', 'secret webhook bodies are signed with (X-Signature)', secret),
  webhookClientMessages: setting(
    'WEBHOOK_CLIENT_MESSAGES',
    'off',
    'on: every message a client publishes to a topic is also sent to WEBHOOK_URL as client.message',
    z.enum(['on', 'off'], { error: 'must be on or off' }).transform((v) => v === 'on'),
  ),
  webhookGraceMs: setting(
    'WEBHOOK_GRACE_MS',
    '5000',
    'how long a uid may be gone before user.offline is sent (a page refresh sends nothing)',
    positiveInt(3_600_000),
  ),
  adminToken: setting(
    'ADMIN_TOKEN',
    '',
    'token for the admin page at /admin on the web port; empty = no admin page',
    secret,
  ),
  adminSessionSeconds: setting(
    'ADMIN_SESSION_SECONDS',
    '43200',
    'how long an admin page sign-in lasts (a cookie); changing ADMIN_TOKEN ends every session',
    positiveInt(30 * 86400),
  ),
  adminSampleMs: setting(
    'ADMIN_SAMPLE_MS',
    '10000',
    "how often the admin page's charts get a sample (online users, pages, pushes, stored backlog, webhook failures); the last hour is kept, at most 3600 samples",
    positiveInt(60_000).refine((n) => n >= 100, 'must be an integer 100-60000'),
  ),
  onlineCountIntervalMs: setting(
    'ONLINE_COUNT_INTERVAL_MS',
    '1000',
    'how often online counts are checked and, when changed, broadcast (update_online_count)',
    positiveInt(60_000),
  ),
  sseHeartbeatMs: setting(
    'SSE_HEARTBEAT_MS',
    '15000',
    'how often every SSE stream (/events) gets a comment line (a heartbeat), so proxies keep it open; a stream that took none of its bytes over two heartbeats is cut',
    positiveInt(3_600_000),
  ),
  sseOpensPerSecond: setting(
    'SSE_OPENS_PER_SECOND',
    '20',
    'SSE streams (/events) one client address may open a second, bursts of twice that; past it a new stream is ended at once with a retry of 1-3 s',
    positiveInt(100_000),
  ),
  sseMaxReplays: setting(
    'SSE_MAX_REPLAYS',
    '64',
    'SSE streams sending their stored messages at once (each holds the live events that come meanwhile); one uid may have an eighth of them, one client address a quarter; past a bound a new stream is ended at once with a retry of 1-3 s',
    positiveInt(100_000),
  ),
  shutdownTimeoutMs: setting(
    'SHUTDOWN_TIMEOUT_MS',
    '5000',
    'on SIGTERM/SIGINT, how long open connections may take to finish before they are cut',
    positiveInt(120_000),
  ),
} as const;

/**
 * A rejected value as a config error shows it. Secrets only by their length; URLs (REDIS_URL,
 * WEBHOOK_URL, a URL pasted into REDIS_CLUSTER or REDIS_SENTINELS) as scheme and host, since
 * they may carry a password or a token.
 */
export function shownValue(schema: z.ZodType<unknown, string>, raw: string): string {
  if (schema === secret || schema === password) return `${raw.length} character${raw.length === 1 ? '' : 's'}`;
  if (schema === redisUrl) return JSON.stringify(shownUrl(raw.trim()));
  if (schema === redisSeeds) return JSON.stringify(raw.split(',').map((n) => (/^rediss?:\/\//.test(n.trim()) ? shownUrl(n.trim()) : n.trim())).join(','));
  // host:port entries as written; anything with a scheme or credentials (a pasted URL) hidden
  if (schema === sentinelList) return JSON.stringify(raw.split(',').map((n) => (/:\/\/|@/.test(n) ? shownUrl(n.trim()) : n.trim())).join(','));
  if (schema === urlList) return JSON.stringify(raw.split(',').map((u) => shownUrl(u.trim())).join(', '));
  return JSON.stringify(raw);
}
