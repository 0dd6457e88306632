// Composition root: createServer(config, components) builds a server in the order the parts
// depend on each other, and returns a handle with the bound ports and close(). A push goes:
//   api/app.ts -> api/fast-legacy.ts or api/legacy-routes.ts (legacy), api/push-routes.ts
//   (/api/v1) -> delivery.ts -> Socket.IO rooms joined in socket-handlers.ts (and SSE streams
//   of GET /events, members of the same rooms: sse/), and message-store.ts for stored ones
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import { NodeStats } from './admin/node-stats.ts';
import { adminPeers, localTransports } from './admin/peers.ts';
import { testPush } from './admin/test-push.ts';
import { MemoryAdminSessions } from './admin/sessions.ts';
import { SignInThrottle } from './admin/sign-in-throttle.ts';
import { AdminView } from './admin/view.ts';
import { createApiApp } from './api/app.ts';
import { KEPT_PAGE_BYTES, PushApi } from './api/push-routes.ts';
import type { SignatureLog } from './api/push-auth.ts';
import { maxRequestHeadBytes } from './api/query.ts';
import { ClientAddresses } from './client-address.ts';
import type { ConnectionPlaces } from './connection-limit.ts';
import type { RedisCluster, RedisTarget } from './cluster/components.ts';
import { packageVersion, usesRedis, type Config } from './config.ts';
import { CatchUp } from './catch-up.ts';
import { PublishRates, topicMatcher, type ClientMessage } from './client-publish.ts';
import { Delivery } from './delivery.ts';
import { LeanEmitter } from './lean-emit.ts';
import type { PushIo, PushSocket } from './events.ts';
import { FairPool, fairShares } from './fair-pool.ts';
import { closeHttp, httpServer, listen, readTls, StartupError } from './listeners.ts';
import { consoleLogger, type Logger } from './log.ts';
import { LoginVerifier } from './login-auth.ts';
import { MessageStatus } from './message-status.ts';
import { MemoryMessageStore, type ExpiredListener, type MessageStore, type StoreLimits, type StoreStats } from './message-store.ts';
import type { PushObserver } from './messages.ts';
import { connectionsByTransport, Metrics } from './metrics.ts';
import { OnlineCountBroadcaster } from './online-count.ts';
import { PeriodicTask } from './periodic.ts';
import { MemoryPresence, type OnlineCounts, type Presence } from './presence.ts';
import { Scheduler } from './scheduler.ts';
import { sdkScript, SDK_PATH, serveSdk } from './sdk-script.ts';
import { registerSocketHandlers, type SocketObserver } from './socket-handlers.ts';
import { createSockets } from './socket-server.ts';
import { EventsEndpoint } from './sse/endpoint.ts';
import { SseMembers, type MemberAdapter } from './sse/members.ts';
import { statusPeers } from './status-peers.ts';
import { demoHandler } from './web.ts';
import type { WebhookObserver } from './webhooks/events.ts';
import { MemoryAnnouncedState, PresenceWebhooks, type AnnouncedState } from './webhooks/presence-webhooks.ts';
import { WebhookSender } from './webhooks/sender.ts';

export { StartupError } from './listeners.ts';

/** Swappable parts; in-memory defaults. */
/** Idle keep-alive time on the push API: above the 60 s of common proxies' idle timeouts. */
export const API_KEEP_ALIVE_MS = 65_000;

export interface Components {
  presence?: Presence;
  store?: MessageStore;
  log?: Logger;
  /** Where ACCESS_LOG=on writes its lines (one JSON object each, no newline). @default stdout */
  accessLog?: (line: string) => void;
  /**
   * A WORKERS process: the primary listens on the Socket.IO port and hands connections over
   * (cluster/sticky-worker.ts); this process does not listen on it, and reports ioPort as given.
   */
  sticky?: boolean;
  /**
   * Limits kept for a whole WORKERS machine by its primary (cluster/shared-limits.ts):
   * MAX_CONNECTIONS_PER_IP's count and the signed requests remembered against replay.
   * @default this process's own
   */
  shared?: { connections: ConnectionPlaces; signatures: SignatureLog };
}

export interface ServerHandle {
  ports: { io: number; api: number; web: number | null };
  /**
   * Where presence and stored messages live: this process (stored messages in memory, or on
   * disk in DATA_DIR), or Redis shared by a cluster.
   */
  engine: 'memory' | 'embedded' | 'redis' | 'redis-cluster' | 'redis-sentinel';
  io: PushIo;
  metrics: Metrics;
  /** Stops accepting, disconnects every socket, lets requests finish; idempotent. */
  close(): Promise<void>;
}

/**
 * Connects to Redis (REDIS_URL, or a Sentinel-managed Redis by REDIS_SENTINELS) or a Redis
 * Cluster (REDIS_CLUSTER) for the cluster components. cluster/components.ts (with
 * cluster/redis-client.ts, sentinel.ts and redis-cluster-client.ts, the only importers of redis
 * and the adapter) is loaded only here, so a single node never loads them. Unreachable: one line.
 */
async function joinCluster(config: Config, log: Logger): Promise<RedisCluster> {
  const { connectCluster, connectRedisCluster, RedisStartupError } = await import('./cluster/components.ts');
  const options = { commandTimeoutMs: config.redisCommandTimeoutMs, tlsCa: config.redisTlsCa };
  try {
    // the three exclude each other (config.ts)
    if (config.redisCluster.length > 0) return await connectRedisCluster(config.redisCluster, log, options);
    const target: RedisTarget =
      config.redisUrl ?? {
        sentinels: config.redisSentinels,
        name: config.redisSentinelMaster!, // loadConfig: REDIS_SENTINELS comes with it
        password: config.redisPassword,
        sentinelPassword: config.redisSentinelPassword,
        tls: config.redisTls,
        sentinelTls: config.redisSentinelTls,
      };
    return await connectCluster(target, log, options);
  } catch (err) {
    throw err instanceof RedisStartupError ? new StartupError(err.message) : err;
  }
}

/**
 * The store on disk in DATA_DIR (STORE=embedded). embedded-store.ts, the only importer of lmdb
 * (a native module), is loaded only here. A DATA_DIR taken, unreadable or corrupt: one line.
 */
async function openEmbeddedStore(config: Config, limits: StoreLimits, onExpired: ExpiredListener, log: Logger): Promise<MessageStore> {
  const { EmbeddedMessageStore, EmbeddedStoreError } = await import('./embedded-store.ts');
  try {
    return new EmbeddedMessageStore(config.dataDir, limits, { onExpired, log, checkMs: config.storeCheckMs });
  } catch (err) {
    throw err instanceof EmbeddedStoreError ? new StartupError(err.message) : err;
  }
}

/** What the sinks read back when asked (/metrics, the admin page, a webhook's grace check). */
interface Reads {
  counts(): Promise<OnlineCounts>;
  isOnline(uid: string): Promise<boolean>;
  storeStats(): Promise<StoreStats>;
  connections(): ReturnType<typeof connectionsByTransport>;
}

/** Where events go: metrics, the admin page's stats and, with WEBHOOK_URL, the webhooks. */
interface Sinks {
  metrics: Metrics;
  admin: NodeStats;
  sender: WebhookSender | null;
  webhooks: PresenceWebhooks | null;
  sockets: SocketObserver;
  pushes: PushObserver;
  expired: ExpiredListener;
}

function createSinks(config: Config, log: Logger, announced: AnnouncedState, reads: Reads, status: MessageStatus, cluster: RedisCluster | null): Sinks {
  const metrics = new Metrics({
    log,
    version: packageVersion(),
    sources: { connections: reads.connections, online: reads.counts, store: reads.storeStats, ...(cluster ? { redis: () => cluster.notReady() } : {}) },
  });
  const admin = new NodeStats({ sampleMs: config.adminSampleMs });
  const webhookObserver: WebhookObserver = {
    sent: (event) => {
      metrics.webhooks.sent(event);
      admin.webhook(event, 'sent');
    },
    failed: (event, error) => {
      metrics.webhooks.failed(event, error);
      admin.webhook(event, 'failed', error);
    },
    dropped: (event, reason) => {
      metrics.webhooks.dropped(event, reason);
      admin.webhook(event, 'dropped', reason);
    },
  };
  const sender =
    config.webhookUrl.length > 0 ? new WebhookSender(config.webhookUrl, config.webhookSecret, {}, log, webhookObserver) : null;
  // a uid's first and last page anywhere become user.online / user.offline
  const webhooks = sender ? new PresenceWebhooks(sender, reads.isOnline, announced, { graceMs: config.webhookGraceMs }, log) : null;
  return {
    metrics,
    admin,
    sender,
    webhooks,
    sockets: {
      login: (result) => metrics.login(result),
      firstPage: (uid) => webhooks?.online(uid),
      lastPage: (uid) => webhooks?.offline(uid),
    },
    pushes: {
      pushed: (api, result) => {
        metrics.pushed(api, result);
        if (result !== 'fail') admin.pushed();
      },
      observePushToEmit: (startedAt) => metrics.observePushToEmit(startedAt),
    },
    expired: (uid, message) => {
      status.expired(uid, message.id, status.keepUntil(message.expiresAt));
      sender?.send({ type: 'message.stored_expired', uid, messageId: message.id, event: message.event });
    },
  };
}

/**
 * Presence and message store: the injected ones, else Redis's or in-memory ones that report
 * what they find on their own (a dead node's last pages, messages expired unacked) to the
 * sinks. close() closes only what was built here: injected components are the caller's.
 */
async function createStorage(config: Config, components: Components, cluster: RedisCluster | null, sinks: Sinks, log: Logger) {
  const limits: StoreLimits = {
    maxPendingPerUid: config.maxPendingPerUid,
    maxBytes: config.maxStoreBytes,
    maxScheduled: config.maxScheduled,
    maxScheduledBytes: config.maxScheduledBytes,
    maxIdempotencyBytes: config.maxIdempotencyBytes,
  };
  const nodeId = `${hostname()}-${randomBytes(4).toString('hex')}`; // unique among live nodes
  const shared = cluster?.build(nodeId, limits, { onReapedOffline: sinks.sockets.lastPage, onExpired: sinks.expired }) ?? null;
  // the store first: a DATA_DIR that cannot be opened stops the start before presence runs
  const embedded = !components.store && !shared && config.store === 'embedded';
  const store: MessageStore =
    components.store ??
    shared?.store ??
    (embedded ? await openEmbeddedStore(config, limits, sinks.expired, log) : new MemoryMessageStore(limits, sinks.expired));
  const presence: Presence = components.presence ?? shared?.presence ?? new MemoryPresence();
  const close = async (): Promise<void> => {
    if (cluster) await cluster.close(); // its own presence and store, then its clients
    else await Promise.all([components.presence ? null : presence.close(), components.store ? null : store.close()]);
  };
  return { presence, store, close, embedded };
}

/**
 * Binds the listeners in order (Socket.IO, push API, web page); the web page is told the
 * ports bound. A WORKERS process does not bind the Socket.IO port (see Components.sticky).
 * Rejects with one line; what it bound is in `bound`, for the caller to close.
 */
async function startListening(
  config: Config,
  components: Components,
  servers: { io: PushIo; ioHttp: HttpServer; apiHttp: HttpServer; webHttp: (ports: { io: number; api: number }) => Promise<HttpServer> },
  bound: HttpServer[],
): Promise<ServerHandle['ports']> {
  let ioPort = config.ioPort;
  if (components.sticky) {
    const { serveHandedOver } = await import('./cluster/sticky-worker.ts');
    serveHandedOver(servers.io);
  } else {
    ioPort = await listen(servers.ioHttp, config.ioPort, config.host, 'IO_PORT');
    bound.push(servers.ioHttp);
  }
  const apiPort = await listen(servers.apiHttp, config.apiPort, config.host, 'API_PORT');
  bound.push(servers.apiHttp);
  let webPort: number | null = null;
  if (config.webPort !== null) {
    const webHttp = await servers.webHttp({ io: ioPort, api: apiPort });
    webPort = await listen(webHttp, config.webPort, config.host, 'WEB_PORT');
    bound.push(webHttp);
  }
  return { io: ioPort, api: apiPort, web: webPort };
}

export async function createServer(config: Config, components: Components = {}): Promise<ServerHandle> {
  const tls = readTls(config); // first: a bad file stops the start before anything runs
  const log = components.log ?? consoleLogger;
  // Redis's clients before the sinks: the webhooks' announced state lives there
  const cluster = usesRedis(config) ? await joinCluster(config, log) : null;

  // what became of each push: in memory, its timer stopped by close() (or a failed start)
  const status = new MessageStatus({ maxBytes: config.maxStatusBytes, keepMs: config.statusSeconds * 1000 });
  // 1. the sinks, which read back from parts built below only when asked, never while built
  const sinks = createSinks(config, log, cluster?.announced ?? new MemoryAnnouncedState(), {
    counts: () => presence.counts(),
    isOnline: (uid) => presence.isOnline(uid),
    storeStats: () => store.stats(),
    connections: () => connectionsByTransport(io.of('/').sockets.values(), sseMembers.size),
  }, status, cluster);
  const { metrics, admin, sender, webhooks } = sinks;

  // 2. the stores that report to them
  let storage: Awaited<ReturnType<typeof createStorage>>;
  try {
    storage = await createStorage(config, components, cluster, sinks, log);
  } catch (err) {
    // nothing listens yet: what was built before the store is closed
    status.close();
    metrics.close();
    webhooks?.close();
    await Promise.all([cluster?.close(), sender?.close()]);
    throw err;
  }
  const { presence, store } = storage;

  // 3. the socket side
  const clientAddresses = new ClientAddresses(config.trustProxy);
  const addressOf = (req: IncomingMessage) => clientAddresses.of(req);
  // the client SDK's script, served beside /socket.io/ (read now when built: a missing one stops the start)
  const sdk = sdkScript();
  // requests outside /socket.io/ (GET /events, the SDK) come only once listening, when events is set
  const { io, ioHttp, connections } = createSockets(config, tls, log, metrics, addressOf, cluster, (req, res) => {
    if ((req.url ?? '/').split('?')[0] === SDK_PATH) serveSdk(sdk, req, res, (err) => log.error('the client SDK could not be built', err));
    else events.handle(req, res);
  }, components.shared?.connections);
  // one node: pushes to a uid's pages may skip Socket.IO's per-packet machinery (lean-emit.ts).
  // A cluster's adapter publishes every emit to the other nodes, and connection state recovery
  // would number each packet in its adapter: both keep Socket.IO's path.
  const lean = cluster || io._opts.connectionStateRecovery ? null : new LeanEmitter(io.of('/'), config.maxSocketBufferBytes);
  // in a cluster each node keeps what it saw; a status query asks the others
  if (cluster) status.setPeers(statusPeers(io, status));
  const budget = new FairPool(fairShares(config.maxRedeliveryBytes));
  const delivery = new Delivery(io, presence, store, budget, config.ackTimeoutMs, metrics, log, lean, status);
  const redeliveryWindow = { messages: config.redeliveryWindow, bytes: config.redeliveryWindowBytes };
  const socketAddress = (socket: PushSocket) => addressOf(socket.request);
  const catchUp = new CatchUp(io, delivery, redeliveryWindow, socketAddress, log);
  // SSE streams join the rooms of the main namespace's adapter, set by createSockets
  const sseMembers = new SseMembers(io.of('/').adapter as unknown as MemberAdapter, config.sseHeartbeatMs, log);
  if (cluster) {
    // Back after an outage: this node's pages may have missed live emits (its subscription
    // was down) and logins here may have found the store away; pages on the other nodes may
    // have missed what this node published meanwhile, so they are told to catch up too.
    cluster.onRecovered(() => {
      catchUp.everyone('back from a redis outage');
      sseMembers.reconnectAll('back from a redis outage');
      io.serverSideEmit('catch_up');
    });
    io.on('catch_up', () => {
      catchUp.everyone('another node is back from a redis outage');
      sseMembers.reconnectAll('another node is back from a redis outage');
    });
  }
  // pushes that found this node's pages offline in a presence that had lost them were stored only
  presence.onRestored?.(() => {
    catchUp.everyone("this node's pages written back to the shared presence");
    sseMembers.reconnectAll("this node's pages written back to the shared presence");
  });
  const verifier = config.loginSecret === null ? null : new LoginVerifier(config.loginSecret);
  const publishRates = new PublishRates(config.clientPublishPerSecond);
  registerSocketHandlers(io, {
    presence,
    observer: sinks.sockets,
    delivery,
    catchUp,
    verifier,
    maxTopicsPerSocket: config.maxTopicsPerSocket,
    eventsPerSecond: config.socketEventsPerSecond,
    redeliveryWindow,
    addressOf: socketAddress,
    loginTimeoutMs: config.loginTimeoutMs,
    clientPublish: {
      allowed: topicMatcher(config.clientPublishTopics),
      maxBytes: config.maxClientMessageBytes,
      rates: publishRates,
      ...(config.webhookClientMessages && sender
        ? {
            published: (uid: string, messageId: string, { topic, data }: ClientMessage) =>
              sender.send({ type: 'client.message', uid, topic, messageId, data }),
          }
        : {}),
    },
    log,
  });

  const events = new EventsEndpoint({
    members: sseMembers,
    presence,
    delivery,
    verifier,
    observer: sinks.sockets,
    connections,
    addressOf,
    corsOrigins: config.corsOrigins,
    maxTopics: config.maxTopicsPerSocket,
    maxBufferBytes: config.maxSocketBufferBytes,
    setupTimeoutMs: config.loginTimeoutMs,
    maxReplays: config.sseMaxReplays,
    window: redeliveryWindow,
    opensPerSecond: config.sseOpensPerSecond,
    heartbeatMs: config.sseHeartbeatMs,
    slowCut: (address, bytes) => {
      metrics.slowConnectionCut();
      log.warn(`closed an SSE stream from ${address}: it does not read (${bytes} bytes waited to be sent to it)`);
    },
    log,
  });

  // 4. the push API
  let listeningNow = false;
  const pushApi = new PushApi(delivery, store, config, sinks.pushes);
  const api = createApiApp({
    delivery,
    pushApi,
    presence,
    status,
    notReady: async () => (listeningNow ? ((await cluster?.notReady()) ?? null) : 'not listening'),
    renderMetrics: () => metrics.render(),
    observer: sinks.pushes,
    config,
    addressOf,
    log,
    accessLog: config.accessLog ? (components.accessLog ?? ((line) => console.log(line))) : null,
    ...(components.shared ? { signatures: components.shared.signatures } : {}),
  });
  // a legacy GET may carry a content of MAX_DATA_BYTES in its query (query.ts bounds it)
  const apiHttp = httpServer(tls, api.handler, config, maxRequestHeadBytes(config.maxDataBytes));
  // A backend's idle keep-alive connection is closed by the backend or its proxy, not here:
  // Node's 5 s default closed connections that a client's pool (or nginx's upstream
  // keepalive_timeout, AWS ALB: 60 s) still held, and a push sent as the close crossed it
  // failed with ECONNRESET (63 of 200 batch requests of a bench run whose phases paused > 5 s).
  apiHttp.keepAliveTimeout = API_KEEP_ALIVE_MS;

  // 5. the listeners. The admin page's figures: this node's, and in a cluster every node's
  const adminView = new AdminView(
    admin,
    {
      counts: () => presence.counts(),
      pagesOf: (uid) => presence.pagesOf(uid),
      stored: async (uid, limit) => {
        // bounded as a page of GET /users/:uid/messages; a first message larger comes alone
        const [count, page] = await Promise.all([store.pendingCount(uid), store.pendingPage(uid, 0, limit, KEPT_PAGE_BYTES)]);
        const first = page.entries.length === 0 && page.nextBytes !== undefined ? await store.pendingPage(uid, 0, 1, page.nextBytes) : page;
        return { count, messages: first.entries.map((e) => e.message) };
      },
      storeStats: () => store.stats(),
      localTransports: (uid) => localTransports(io, uid),
    },
    cluster ? adminPeers(io, admin) : null,
  );
  const testPushParts = { delivery, pushApi, maxDataBytes: config.maxDataBytes, observer: sinks.pushes };
  const adminPage =
    config.adminToken === null
      ? null
      : {
          token: config.adminToken,
          sessionSeconds: config.adminSessionSeconds,
          secureCookie: config.tlsCert !== null,
          stats: () => adminView.snapshot(),
          history: () => adminView.history(),
          lookup: (uid: string) => adminView.lookup(uid),
          push: (body: unknown) => testPush(testPushParts, body),
          maxPushBytes: 2 * config.maxDataBytes + 4096, // a content's JSON escapes may double it
          // in Redis, a sign-out holds on every WORKERS process and node
          sessions: cluster?.adminSessions ?? new MemoryAdminSessions(),
          throttle: new SignInThrottle(),
          addressOf,
        };
  let webHttp: HttpServer | null = null;
  const webServer = async (ports: { io: number; api: number }) => {
    webHttp = httpServer(tls, await demoHandler(ports, adminPage), config);
    return webHttp;
  };
  const bound: HttpServer[] = [];
  let ports: ServerHandle['ports'];
  try {
    ports = await startListening(config, components, { io, ioHttp, apiHttp, webHttp: webServer }, bound);
    listeningNow = true;
  } catch (err) {
    events.close();
    io.engine.close();
    status.close();
    await catchUp.close();
    api.close();
    metrics.close();
    webhooks?.close();
    await Promise.all(bound.map(closeHttp));
    await Promise.all([storage.close(), sender?.close()]);
    throw err;
  }

  // 6. the timers, once serving. Each node tells its own sockets (io.local), so a cluster does
  // not multiply broadcasts.
  const counter = new OnlineCountBroadcaster(presence, (html) => io.local.emit('update_online_count', html), config.onlineCountIntervalMs, log);
  const scheduler = new Scheduler(store, delivery, log, { dropped: () => metrics.scheduledDropped() });
  const sampler = new PeriodicTask(() => adminView.sample(), {
    everyMs: config.adminSampleMs,
    failing: (err) => log.warn(`admin page samples: ${err instanceof Error ? err.message : String(err)}`),
  });

  // 7. close: stop taking work, let the connections drain, then the sinks and the stores
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      listeningNow = false; // a balancer stops sending new work while connections drain
      // their timers stop now; a run under way ends before the stores close
      const stopped = Promise.all([counter.close(), scheduler.close(), catchUp.close(), sampler.close()]);
      api.close();
      events.close(); // its streams end now: io.close() waits for the port's connections
      const servers = [ioHttp, apiHttp, ...(webHttp ? [webHttp] : [])];
      const cut = setTimeout(() => servers.forEach((s) => s.closeAllConnections()), config.shutdownTimeoutMs);
      await Promise.all([
        new Promise<void>((resolve) => io.close(() => resolve())),
        closeHttp(apiHttp),
        ...(webHttp ? [closeHttp(webHttp)] : []),
      ]);
      clearTimeout(cut);
      webhooks?.close();
      metrics.close();
      status.close();
      publishRates.close();
      // webhooks already queued get a moment to go out; offlines still in their grace are dropped
      // after io.close(): the Redis adapter unsubscribes through its clients as io closes
      await Promise.all([stopped.then(storage.close), sender?.close({ flushMs: Math.min(2000, config.shutdownTimeoutMs) })]);
    })();
    return closing;
  };

  return { ports, engine: cluster ? (config.redisCluster.length > 0 ? 'redis-cluster' : config.redisUrl === null ? 'redis-sentinel' : 'redis') : storage.embedded ? 'embedded' : 'memory', io, metrics, close };
}
