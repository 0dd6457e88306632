// Composition root: createServer(config, components) wires the listeners and components
// and returns a handle with the bound ports and close(). A push goes:
//   http-api.ts -> legacy-api.ts (legacy) or push-api.ts (/api/v1) -> delivery.ts
//   -> Socket.IO rooms joined in socket-handlers.ts, and message-store.ts for stored ones
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { createServer as createHttpServer, type RequestListener, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { Server } from 'socket.io';
import type { IncomingMessage } from 'node:http';
import { AdminStats } from './admin.ts';
import { ClientAddresses } from './client-address.ts';
import type { Config } from './config.ts';
import { Delivery } from './delivery.ts';
import type { PushIo } from './events.ts';
import { createApiApp } from './api/app.ts';
import { consoleLogger, type Logger } from './log.ts';
import { LoginVerifier } from './login-auth.ts';
import { OnlineCountBroadcaster } from './online-count.ts';
import { MemoryMessageStore, type ExpiredListener, type MessageStore, type StoreLimits } from './message-store.ts';
import { connectionsByTransport, Metrics } from './metrics.ts';
import { boundOutgoing } from './outgoing-bound.ts';
import { MemoryPresence, type Presence } from './presence.ts';
import { PushApi } from './api/push-routes.ts';
import { maxRequestHeadBytes } from './api/query.ts';
import { Scheduler } from './scheduler.ts';
import { registerSocketHandlers, type SocketObserver } from './socket-handlers.ts';
import { WebhookSender } from './webhooks/sender.ts';
import { demoHandler } from './web.ts';
import type { StoredMessage, PushObserver } from './messages.ts';
import type { RedisComponents } from './cluster/components.ts';
import type { WebhookObserver } from './webhooks/events.ts';
import { MemoryAnnouncedState, PresenceWebhooks } from './webhooks/presence-webhooks.ts';

/** Swappable parts; in-memory defaults. */
export interface Components {
  presence?: Presence;
  store?: MessageStore;
  log?: Logger;
  /**
   * A WORKERS process: the primary listens on the Socket.IO port and hands connections over
   * (@socket.io/sticky); this process does not listen on it, and reports ioPort as given.
   */
  sticky?: boolean;
}

export interface ServerHandle {
  ports: { io: number; api: number; web: number | null };
  /** Where presence and stored messages live: this process, or Redis shared by a cluster. */
  engine: 'memory' | 'redis';
  io: PushIo;
  metrics: Metrics;
  /** Stops accepting, disconnects every socket, lets requests finish; idempotent. */
  close(): Promise<void>;
}

/** A listener that could not start; its message is the one line to show. */
export class StartupError extends Error {
  override name = 'StartupError';
}

function listen(server: HttpServer, port: number, host: string, setting: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const where = `${setting} ${port} on ${host}`;
      if (err.code === 'EADDRINUSE') reject(new StartupError(`${where}: port is already in use`));
      else if (err.code === 'EACCES') reject(new StartupError(`${where}: permission denied`));
      else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND')
        reject(new StartupError(`HOST ${host} is not an address of this machine`));
      else reject(new StartupError(`${where}: ${err.message}`));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    });
  });
}

function closeHttp(server: HttpServer): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

/** The certificate and key when TLS is on; an unreadable file stops the start. */
function readTls(config: Config): { cert: Buffer; key: Buffer } | null {
  if (config.tlsCert === null || config.tlsKey === null) return null;
  const read = (setting: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new StartupError(`${setting} ${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  };
  return { cert: read('TLS_CERT', config.tlsCert), key: read('TLS_KEY', config.tlsKey) };
}

/**
 * Connects to Redis for the cluster components. redis.ts (the only importer of redis and the
 * adapter) is loaded only here, so a single node never loads them. Unreachable: one line.
 */
async function joinCluster(
  url: string,
  limits: StoreLimits,
  log: Logger,
  found: { onReapedOffline: (uid: string) => void; onExpired: ExpiredListener; commandTimeoutMs: number },
): Promise<RedisComponents> {
  const { createRedisComponents, RedisStartupError } = await import('./cluster/components.ts');
  const nodeId = `${hostname()}-${randomBytes(4).toString('hex')}`; // unique among live nodes
  try {
    return await createRedisComponents(url, nodeId, log, limits, found);
  } catch (err) {
    throw err instanceof RedisStartupError ? new StartupError(err.message) : err;
  }
}

/** Counts open Socket.IO connections per client address, for MAX_CONNECTIONS_PER_IP. */
class ConnectionCounter {
  private readonly open = new Map<string, number>();
  private refused = 0;
  private loggedAt = -Infinity;
  constructor(
    private readonly max: number,
    private readonly log: Logger,
  ) {}
  allows(address: string): boolean {
    if (this.max === 0 || (this.open.get(address) ?? 0) < this.max) return true;
    // one line per 10 s at most, so a client hammering the cap cannot flood the log
    this.refused++;
    const now = Date.now();
    if (now - this.loggedAt >= 10_000) {
      this.log.warn(`connection refused: ${address} has MAX_CONNECTIONS_PER_IP (${this.max}) open`, { refused: this.refused });
      this.loggedAt = now;
      this.refused = 0;
    }
    return false;
  }
  opened(address: string): void {
    this.open.set(address, (this.open.get(address) ?? 0) + 1);
  }
  closed(address: string): void {
    const n = (this.open.get(address) ?? 1) - 1;
    if (n <= 0) this.open.delete(address);
    else this.open.set(address, n);
  }
}

export async function createServer(config: Config, components: Components = {}): Promise<ServerHandle> {
  const tls = readTls(config); // first: a bad file stops the start before anything runs
  const log = components.log ?? consoleLogger;
  const limits: StoreLimits = {
    maxPendingPerUid: config.maxPendingPerUid,
    maxBytes: config.maxStoreBytes,
    maxScheduled: config.maxScheduled,
    maxScheduledBytes: config.maxScheduledBytes,
    maxIdempotencyBytes: config.maxIdempotencyBytes,
  };
  // What the shared parts find on their own: a dead node's last pages (reported by the node
  // that reaps it) and messages that expired unacked (by the store's sweep). The webhooks that
  // announce them are built below, so these are bound late.
  const found = {
    lastPage: (_uid: string): void => {},
    expired: (_uid: string, _message: StoredMessage): void => {},
  };
  const onExpired: ExpiredListener = (uid, message) => found.expired(uid, message);
  const redis =
    config.redisUrl === null
      ? null
      : await joinCluster(config.redisUrl, limits, log, {
          onReapedOffline: (uid) => found.lastPage(uid),
          onExpired,
          commandTimeoutMs: config.redisCommandTimeoutMs,
        });
  const presence = components.presence ?? redis?.presence ?? new MemoryPresence();
  const store = components.store ?? redis?.store ?? new MemoryMessageStore(limits, onExpired);
  /** Closes presence and store: through Redis's own close when they are Redis's. */
  const closeComponents = async () => {
    await Promise.all([components.presence ? presence.close() : null, components.store ? store.close() : null]);
    if (redis) await redis.close();
    else await Promise.all([presence.close(), store.close()]);
  };

  const listener = (handler: RequestListener, maxHeaderSize?: number): HttpServer => {
    const options = maxHeaderSize === undefined ? {} : { maxHeaderSize };
    return tls ? (createHttpsServer({ ...tls, ...options }, handler) as unknown as HttpServer) : createHttpServer(options, handler);
  };

  const ioHttp = listener((_req, res) => {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  });
  const allowed = config.corsOrigins === '*' ? null : new Set(config.corsOrigins);
  const connections = new ConnectionCounter(config.maxConnectionsPerIp, log);
  const clientAddresses = new ClientAddresses(config.trustProxy);
  const addressOf = (req: IncomingMessage) => clientAddresses.of(req);
  const io: PushIo = new Server(ioHttp, {
    allowEIO3: true, // socket.io-client 2.x pages
    cors: { origin: allowed === null ? true : [...allowed], credentials: true },
    allowRequest: (req, cb) => {
      // CORS does not cover WebSocket: an origin list is enforced on every request.
      const origin = req.headers.origin;
      if (allowed !== null && origin !== undefined && !allowed.has(origin)) return cb('origin not allowed', false);
      // JSONP polling (`j`, socket.io-client 2.x in old browsers) is a script tag: it sends no
      // Origin and reads across origins, so with an origin list it would bypass the list.
      if (allowed !== null && new URLSearchParams((req.url ?? '').split('?')[1] ?? '').has('j')) {
        return cb('JSONP polling is refused because CORS_ORIGINS lists origins; use XHR polling or WebSocket', false);
      }
      const isHandshake = !new URLSearchParams((req.url ?? '').split('?')[1] ?? '').has('sid');
      if (isHandshake && !connections.allows(addressOf(req))) {
        return cb('too many connections from this address', false);
      }
      cb(null, true);
    },
    maxHttpBufferSize: config.maxSocketMessageBytes,
  });
  if (redis) io.adapter(redis.adapter); // rooms and broadcasts span the nodes
  // resolved once from the handshake request, so the close is counted against the same address
  io.engine.on('connection', (raw: { request: IncomingMessage; once(event: 'close', fn: () => void): void }) => {
    const address = addressOf(raw.request);
    connections.opened(address);
    raw.once('close', () => connections.closed(address));
  });
  const metrics = new Metrics({
    log,
    sources: {
      connections: () => connectionsByTransport(io.of('/').sockets.values()),
      online: () => presence.counts(),
      store: () => store.stats(),
    },
  });
  io.engine.on('connection', (conn: Parameters<typeof boundOutgoing>[0] & { request: IncomingMessage }) => {
    boundOutgoing(conn, config.maxSocketBufferBytes, (bytes) => {
      metrics.slowConnectionCut();
      log.warn(`closed a connection from ${addressOf(conn.request)}: ${bytes} bytes waited to be sent to it (MAX_SOCKET_BUFFER_BYTES)`);
    });
  });
  const admin = new AdminStats(() => presence.counts());
  // WEBHOOK_URL set: a uid's first and last page become user.online / user.offline
  const webhookObserver: WebhookObserver = {
    sent: (event) => metrics.webhooks.sent(event),
    failed: (event, error) => {
      metrics.webhooks.failed(event, error);
      admin.webhookFailed(event, error);
    },
    dropped: (event, reason) => metrics.webhooks.dropped(event, reason),
  };
  const sender =
    config.webhookUrl.length > 0 ? new WebhookSender(config.webhookUrl, config.webhookSecret, {}, log, webhookObserver) : null;
  const webhooks = sender
    ? new PresenceWebhooks(sender, (uid) => presence.isOnline(uid), redis?.announced ?? new MemoryAnnouncedState(), { graceMs: config.webhookGraceMs }, log)
    : null;
  const socketObserver: SocketObserver = {
    login: (result) => metrics.login(result),
    firstPage: (uid) => webhooks?.online(uid),
    lastPage: (uid) => webhooks?.offline(uid),
  };
  found.lastPage = (uid) => socketObserver.lastPage(uid);
  found.expired = (uid, message) => sender?.send({ type: 'message.stored_expired', uid, messageId: message.id, event: message.event });

  const delivery = new Delivery(io, presence, store, config.ackTimeoutMs, metrics, log);
  registerSocketHandlers(io, {
    presence,
    observer: socketObserver,
    delivery,
    verifier: config.loginSecret === null ? null : new LoginVerifier(config.loginSecret),
    maxTopicsPerSocket: config.maxTopicsPerSocket,
    eventsPerSecond: config.socketEventsPerSecond,
    redeliveryWindow: { messages: config.redeliveryWindow, bytes: config.redeliveryWindowBytes },
    loginTimeoutMs: config.loginTimeoutMs,
    log,
  });
  const pushObserver: PushObserver = {
    pushed: (api, result) => {
      metrics.pushed(api, result);
      if (result !== 'fail') admin.pushed();
    },
    observePushToEmit: (startedAt) => metrics.observePushToEmit(startedAt),
  };
  const pushApi = new PushApi(delivery, store, config, pushObserver);
  let listeningNow = false;
  const api = createApiApp({
    delivery,
    pushApi,
    presence,
    notReady: async () => (listeningNow ? ((await redis?.notReady()) ?? null) : 'not listening'),
    renderMetrics: () => metrics.render(),
    observer: pushObserver,
    config,
    addressOf,
    log,
  });
  // a legacy GET may carry a content of MAX_DATA_BYTES in its query (query.ts bounds it)
  const apiHttp = listener(api.handler, maxRequestHeadBytes(config.maxDataBytes));
  // a client that trickles its request (slowloris) is cut off instead of holding a socket
  apiHttp.headersTimeout = 10_000;
  apiHttp.requestTimeout = 30_000;
  let webHttp: HttpServer | null = null;

  const listening: HttpServer[] = [];
  let ports: ServerHandle['ports'];
  try {
    let ioPort = config.ioPort;
    if (components.sticky) {
      const { setupWorker } = await import('@socket.io/sticky');
      setupWorker(io as unknown as Parameters<typeof setupWorker>[0]);
    } else {
      ioPort = await listen(ioHttp, config.ioPort, config.host, 'IO_PORT');
      listening.push(ioHttp);
    }
    const apiPort = await listen(apiHttp, config.apiPort, config.host, 'API_PORT');
    listening.push(apiHttp);
    let webPort: number | null = null;
    if (config.webPort !== null) {
      const adminPage =
        config.adminToken === null
          ? null
          : {
              token: config.adminToken,
              sessionSeconds: config.adminSessionSeconds,
              secureCookie: config.tlsCert !== null,
              stats: () => admin.snapshot(),
            };
      webHttp = listener(await demoHandler({ io: ioPort, api: apiPort }, adminPage));
      webPort = await listen(webHttp, config.webPort, config.host, 'WEB_PORT');
      listening.push(webHttp);
    }
    ports = { io: ioPort, api: apiPort, web: webPort };
    listeningNow = true;
  } catch (err) {
    io.engine.close();
    api.close();
    metrics.close();
    webhooks?.close();
    await Promise.all(listening.map(closeHttp));
    await Promise.all([closeComponents(), sender?.close()]);
    throw err;
  }

  // Each node tells its own sockets (io.local), so a cluster does not multiply broadcasts.
  const counter = new OnlineCountBroadcaster(
    presence,
    (html) => io.local.emit('update_online_count', html),
    config.onlineCountIntervalMs,
    log,
  );
  const scheduler = new Scheduler(store, delivery, log, { dropped: () => metrics.scheduledDropped() });

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      listeningNow = false; // a balancer stops sending new work while connections drain
      counter.close();
      scheduler.close();
      api.close();
      const servers = [ioHttp, apiHttp, ...(webHttp ? [webHttp] : [])];
      const cut = setTimeout(() => servers.forEach((s) => s.closeAllConnections()), config.shutdownTimeoutMs);
      cut.unref();
      await Promise.all([
        new Promise<void>((resolve) => io.close(() => resolve())),
        closeHttp(apiHttp),
        ...(webHttp ? [closeHttp(webHttp)] : []),
      ]);
      clearTimeout(cut);
      webhooks?.close();
      metrics.close();
      // webhooks already queued get a moment to go out; offlines still in their grace are dropped
      // after io.close(): the Redis adapter unsubscribes through its clients as io closes
      await Promise.all([closeComponents(), sender?.close({ flushMs: Math.min(2000, config.shutdownTimeoutMs) })]);
    })();
    return closing;
  };

  return { ports, engine: redis ? 'redis' : 'memory', io, metrics, close };
}
