// The Redis connection policy shared by every client of a node: connect once at start (one
// line when it cannot), fail commands at once while Redis is away, probe a client that stops
// answering and cut it so waiting commands fail, reconnect with backoff, log an outage once.
// The only module that loads `redis`; import it (through components.ts) only when REDIS_URL is set.
import { createClient, type RedisClientType } from 'redis';
import type { Logger } from '../log.ts';
import { shownUrl } from '../secrets.ts';

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

/** The short reason of a connection error: its code (ECONNREFUSED) when it has one. */
export function reasonOf(err: unknown): string {
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
export class Connection {
  /**
   * The URL as log lines show it: scheme and host, credentials masked. For the log only: what
   * anyone on the API port can read (/readyz, 503 bodies) does not name the internal Redis.
   */
  readonly where: string;
  private readonly down = new Set<RedisClient>();
  private readonly probes = new Set<NodeJS.Timeout>();
  private live = false;
  /** Told each time every client is connected (and subscribed) again after some were lost. */
  private readonly recoveredListeners = new Set<() => void>();
  /** The PING of /readyz under way: concurrent probes share it rather than queue more. */
  private checking: Promise<boolean> | null = null;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
    readonly timeoutMs: number,
  ) {
    this.where = shownUrl(url);
  }

  /** True while some client is away: failures then are part of an outage already logged. */
  get lost(): boolean {
    return this.down.size > 0 || !this.live;
  }

  /**
   * `listener` runs each time the last lost client is ready again. node-redis reports a client
   * ready once its subscriptions are restored, so a subscriber gets what is published from then on.
   */
  onRecovered(listener: () => void): void {
    this.recoveredListeners.add(listener);
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
    this.probes.add(timer); // cleared by stop()
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
      if (this.down.delete(client) && this.down.size === 0) {
        this.log.info(`redis ${this.where}: connected again`);
        if (this.live) for (const listener of this.recoveredListeners) listener();
      }
    });
    return client;
  }
}

/** Connects the clients, or throws a RedisStartupError naming REDIS_URL and the reason. */
export async function connectAll(connection: Connection, count: number): Promise<RedisClient[]> {
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
export async function quit(client: RedisClient): Promise<void> {
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
  const connection = new Connection(url, log, commandTimeoutMs);
  const [client] = await connectAll(connection, 1);
  connections.set(client!, connection);
  return client!;
}

/** The connection of each client made by connectRedis, whose probe closeRedis stops. */
const connections = new WeakMap<RedisClient, Connection>();

/** Closes a client made by connectRedis. */
export function closeRedis(client: RedisClient): Promise<void> {
  connections.get(client)?.stop();
  return quit(client);
}
