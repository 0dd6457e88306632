// The only module that loads `redis` and `@socket.io/redis-adapter`; import it only when
// REDIS_URL is set. createRedisComponents() connects the clients and builds what a cluster
// node swaps in: the Socket.IO adapter (rooms and broadcasts across nodes), the Redis
// presence and the Redis message store.
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient, DisconnectsClientError, type RedisClientType } from 'redis';
import type { Logger } from './log.ts';
import type { AnnouncedState } from './webhooks.ts';
import { StoreUnavailableError, type ExpiredListener, type MessageStore, type StoreLimits } from './message-store.ts';
import { RedisPresence, type RedisPresenceOptions } from './redis-presence.ts';
import { RedisMessageStore } from './redis-store.ts';

export type RedisClient = RedisClientType;

/** REDIS_URL could not be used at startup; the message is the one line to show. */
export class RedisStartupError extends Error {
  override name = 'RedisStartupError';
}

/** Longest wait for a client's pending commands at close before it is let go. */
const CLOSE_MS = 2000;

/** REDIS_COMMAND_TIMEOUT_MS when not given. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 2000;

/** Longest wait of /readyz for Redis's PING: probes (Kubernetes' default 1 s) give up sooner. */
const READY_PING_MS = 1000;

/** The wait before reconnect attempt `retries` (0-based): doubling from 100 ms to 2 s, plus jitter. */
function backoff(retries: number): number {
  // jitter, so the nodes of a cluster do not all come back in the same millisecond
  return Math.min(100 * 2 ** retries, 2000) + Math.floor(Math.random() * 100);
}

/** The URL without its password, for messages. */
function shown(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

/** The short reason of a connection error: its code (ECONNREFUSED) when it has one. */
function reasonOf(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return typeof code === 'string' ? code : err.message;
  }
  return String(err);
}

/**
 * The connection state of a set of clients to one Redis: logs one line when the first of
 * them loses its connection and one when the last is back, whatever the number of clients
 * and retries. Until start() (and after stop()) a lost connection is not retried: a Redis
 * that is down at startup fails the start, and a closing node does not reconnect.
 *
 * A Redis that stops answering (a frozen process or VM, a network path that drops packets
 * silently) leaves the TCP connection open, and node-redis waits for a reply forever: its
 * command `timeout` only covers commands not yet written, and its `socketTimeout` is reset by
 * every write, so it never fires while callers keep sending. So each client is probed: a PING
 * every timeoutMs / 2 while it is ready, and one unanswered for timeoutMs makes the client
 * count as lost. It is then destroyed, which rejects every command waiting on it (callers
 * answer 503 instead of hanging, nothing piles up for the length of the outage), and
 * connected again. While it reconnects, commands fail at once (disableOfflineQueue), and
 * socketTimeout bounds a reconnect whose handshake gets no answer.
 */
class Connection {
  /** The URL as messages show it: without its password. */
  readonly where: string;
  private readonly down = new Set<RedisClient>();
  private readonly probes = new Set<NodeJS.Timeout>();
  private live = false;
  /** The PING of /readyz under way: concurrent probes share it rather than queue more. */
  private checking: Promise<boolean> | null = null;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
    readonly timeoutMs: number,
  ) {
    this.where = shown(url);
  }

  /** True while some client is away: failures then are part of an outage already logged. */
  get lost(): boolean {
    return this.down.size > 0 || !this.live;
  }

  start(clients: RedisClient[]): void {
    this.live = true;
    for (const client of clients) this.probe(client);
  }

  stop(): void {
    this.live = false;
    for (const timer of this.probes) clearInterval(timer);
    this.probes.clear();
  }

  /** True when `client` answers a PING within READY_PING_MS (and the timeout): for /readyz. */
  answers(client: RedisClient): Promise<boolean> {
    this.checking ??= new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), Math.min(READY_PING_MS, this.timeoutMs));
      client.ping().then(
        () => resolve(true),
        () => resolve(false),
      ).finally(() => clearTimeout(timer));
    }).finally(() => (this.checking = null));
    return this.checking;
  }

  /** Pings `client` while it is ready; one PING unanswered for timeoutMs makes it reconnect. */
  private probe(client: RedisClient): void {
    let sentAt: number | null = null; // the PING in flight
    const timer = setInterval(() => {
      if (sentAt !== null) {
        const overdue = sentAt;
        // after the I/O phase: a reply that came while this process was busy counts
        if (Date.now() - overdue >= this.timeoutMs) {
          setImmediate(() => {
            if (sentAt !== overdue) return;
            sentAt = null;
            this.reconnect(client);
          });
        }
        return;
      }
      if (!client.isReady) return;
      const mine = (sentAt = Date.now());
      const answered = () => {
        if (sentAt === mine) sentAt = null;
      };
      // a failed PING is a lost connection, which node-redis reports and handles itself
      client.ping().then(answered, answered);
    }, Math.max(50, Math.floor(this.timeoutMs / 2)));
    timer.unref();
    this.probes.add(timer);
  }

  /** Drops a connection that stopped answering: its waiting commands fail now, then it reconnects. */
  private reconnect(client: RedisClient): void {
    if (!this.live || !client.isOpen) return;
    if (!this.down.has(client)) {
      if (this.down.size === 0) this.log.warn(`redis ${this.where}: no answer within ${this.timeoutMs} ms; reconnecting`);
      this.down.add(client);
    }
    client.destroy();
    // settles when connected, or rejects once stop() ends the retries: either is reported by the events
    client.connect().catch(() => {});
  }

  client(): RedisClient {
    const client: RedisClient = createClient({
      url: this.url,
      // While Redis is away commands fail at once instead of queueing for the whole outage:
      // an API request answers 5xx instead of hanging, and the presence heartbeat notices.
      disableOfflineQueue: true,
      socket: {
        reconnectStrategy: (retries) => (this.live ? backoff(retries) : false),
        // no traffic for this long: dead. A ready client is pinged every timeoutMs / 2, so this
        // only ends a (re)connect whose handshake Redis does not answer.
        socketTimeout: 2 * this.timeoutMs,
      },
    });
    // node-redis emits 'error' for every failed (re)connect; unlistened, it ends the process
    client.on('error', (err: unknown) => {
      if (!this.live) return; // startup reports its own single line; a closing node says nothing
      if (client.isReady) {
        this.log.error(`redis ${this.where}: client error`, err);
        return;
      }
      if (this.down.has(client)) return;
      if (this.down.size === 0) this.log.warn(`redis ${this.where}: connection lost (${reasonOf(err)}); reconnecting`);
      this.down.add(client);
    });
    client.on('ready', () => {
      if (this.down.delete(client) && this.down.size === 0) this.log.info(`redis ${this.where}: connected again`);
    });
    return client;
  }
}

/** Connects the clients, or throws a RedisStartupError naming REDIS_URL and the reason. */
async function connectAll(connection: Connection, count: number): Promise<RedisClient[]> {
  let clients: RedisClient[];
  try {
    clients = Array.from({ length: count }, () => connection.client());
  } catch (err) {
    // node-redis parses the URL here: "Invalid URL", "Invalid protocol"
    throw new RedisStartupError(`REDIS_URL ${connection.where}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const results = await Promise.allSettled(clients.map((c) => c.connect()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    for (const c of clients) if (c.isOpen) c.destroy();
    throw new RedisStartupError(`REDIS_URL ${connection.where}: cannot connect (${reasonOf(failed.reason)})`);
  }
  connection.start(clients);
  return clients;
}

/** Closes a client: its pending commands may finish (briefly) when Redis is there. */
async function quit(client: RedisClient): Promise<void> {
  if (!client.isOpen) return;
  if (!client.isReady) {
    client.destroy();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([
    client.close().then(() => true),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), CLOSE_MS))),
  ]);
  clearTimeout(timer);
  // a Redis that stopped answering mid-close: let the socket go rather than hold the process
  if (!closed) client.unref();
}

/**
 * One client with the policy of createRedisComponents (fails at once when Redis is away,
 * reconnects by itself after it has connected, logs lost/back once). For tests and tools.
 */
export async function connectRedis(url: string, log: Logger, commandTimeoutMs = DEFAULT_COMMAND_TIMEOUT_MS): Promise<RedisClient> {
  const [client] = await connectAll(new Connection(url, log, commandTimeoutMs), 1);
  return client!;
}

/** Closes a client made by connectRedis. */
export function closeRedis(client: RedisClient): Promise<void> {
  return quit(client);
}

/**
 * Commands the adapter sends without awaiting them: publish on each broadcast, (un)subscribe
 * when it starts and closes. One that fails (Redis away) would be an unhandled rejection,
 * which ends a Node process.
 */
const UNAWAITED = new Set([
  'publish', 'sPublish', 'subscribe', 'pSubscribe', 'sSubscribe', 'unsubscribe', 'pUnsubscribe', 'sUnsubscribe',
]);

/** The client as the adapter should see it: the unawaited commands' failures go to `onError`. */
function catchUnawaited(client: RedisClient, onError: (err: unknown) => void): RedisClient {
  return new Proxy(client, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      if (typeof prop === 'string' && UNAWAITED.has(prop)) {
        return (...args: unknown[]) => {
          const result: unknown = Reflect.apply(value, target, args);
          if (result instanceof Promise) result.catch(onError);
          return result;
        };
      }
      return value.bind(target);
    },
  });
}

/**
 * The store as callers see it: a failed Redis command becomes a StoreUnavailableError, so the
 * API answers 503 with a reason rather than a generic 500.
 */
function unavailableOnFailure(store: RedisMessageStore, where: string): MessageStore {
  const wrap =
    <A extends unknown[], R>(method: (...args: A) => Promise<R>, writes: boolean) =>
    async (...args: A): Promise<R> => {
      try {
        return await method.apply(store, args);
      } catch (err) {
        // a connection dropped for not answering: the command was sent, and Redis may run it yet
        const unanswered = err instanceof DisconnectsClientError;
        const reason = unanswered ? 'no answer in time' : reasonOf(err);
        const outcome = writes ? (unanswered ? '; it may or may not have been stored' : '; nothing was stored') : '';
        throw new StoreUnavailableError(`the message store (redis ${where}) is unavailable: ${reason}${outcome}`);
      }
    };
  return {
    add: wrap(store.add, true),
    pending: wrap(store.pending, false),
    ack: wrap(store.ack, true),
    claim: wrap(store.claim, true),
    settle: wrap(store.settle, true),
    release: wrap(store.release, true),
    schedule: wrap(store.schedule, true),
    cancel: wrap(store.cancel, true),
    scheduled: wrap(store.scheduled, false),
    takeDue: wrap(store.takeDue, false),
    stats: wrap(store.stats, false),
    close: () => store.close(),
  };
}

/**
 * Which uids the webhooks announced online, shared by the nodes: a uid announced at node A
 * whose last page closes at node B gets its user.offline from B, once.
 */
export class RedisAnnouncedState implements AnnouncedState {
  constructor(
    private readonly client: RedisClient,
    private readonly prefix: string,
  ) {}

  async markOnline(uid: string): Promise<boolean> {
    return (await this.client.set(`${this.prefix}announced:${uid}`, '1', { NX: true })) === 'OK';
  }

  async markOffline(uid: string): Promise<boolean> {
    return (await this.client.del(`${this.prefix}announced:${uid}`)) === 1;
  }
}

export interface RedisComponents {
  /** For io.adapter(): rooms and broadcasts reach the sockets of every node. */
  adapter: ReturnType<typeof createAdapter>;
  presence: RedisPresence;
  store: MessageStore;
  /** For the online/offline webhooks: each transition announced once in the cluster. */
  announced: AnnouncedState;
  /** Why Redis cannot be used now, or null while it is connected and answers PING (for /readyz). */
  notReady(): Promise<string | null>;
  /**
   * Removes this node's presence, then closes the clients. Call it after io.close(): the
   * adapter unsubscribes through them when io closes. Idempotent.
   */
  close(): Promise<void>;
}

/**
 * Connects three clients to `url` (commands, and publish + subscribe for the adapter) and
 * builds the cluster components on them. Rejects with one RedisStartupError line when Redis
 * cannot be reached now; once connected, the clients reconnect by themselves and the
 * outage is logged once, not per retry.
 */
export async function createRedisComponents(
  url: string,
  nodeId: string,
  log: Logger,
  limits: StoreLimits,
  options: RedisPresenceOptions & { onExpired?: ExpiredListener; commandTimeoutMs?: number } = {},
): Promise<RedisComponents> {
  const connection = new Connection(url, log, options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS);
  const [main, pub, sub] = (await connectAll(connection, 3)) as [RedisClient, RedisClient, RedisClient];
  const unawaitedFailed = (err: unknown) => {
    // in flight when the connection went, or cut by close(): the outage is logged already
    if (!connection.lost) log.warn(`redis ${connection.where}: a Socket.IO adapter command failed (${reasonOf(err)})`);
  };
  const prefix = options.prefix ?? 'push:';
  const adapter = createAdapter(catchUnawaited(pub, unawaitedFailed), catchUnawaited(sub, unawaitedFailed), {
    key: `${prefix}socket.io`,
  });
  const presence = new RedisPresence(main, nodeId, log, options);
  const store = new RedisMessageStore(main, limits, log, { prefix, ...(options.onExpired ? { onExpired: options.onExpired } : {}) });

  let closing: Promise<void> | null = null;
  return {
    adapter,
    presence,
    store: unavailableOnFailure(store, connection.where),
    announced: new RedisAnnouncedState(main, prefix),
    notReady: async () => {
      if (connection.lost) return `redis ${connection.where} is not connected`;
      return (await connection.answers(main)) ? null : `redis ${connection.where} does not answer`;
    },
    close: () =>
      (closing ??= (async () => {
        await presence.close();
        await store.close();
        connection.stop();
        await Promise.all([main, pub, sub].map(quit));
      })()),
  };
}
