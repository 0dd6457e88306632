// The Redis connection policy shared by every client of a node: connect once at start (one
// line when it cannot), fail commands at once while Redis is away, probe a client that stops
// answering and cut it so waiting commands fail, reconnect with backoff, log an outage once.
// With Sentinel (REDIS_SENTINELS) the clients connect to the master the sentinels name, and
// follow it to another address after a failover. The only modules that load `redis` are this
// one and sentinel.ts; import them (through components.ts) only when Redis is configured.
import { createClient, type RedisClientType } from 'redis';
import type { Logger } from '../log.ts';
import { shownUrl } from '../secrets.ts';
import { isCertificateError, readCa, tlsSocket } from './redis-tls.ts';
import { SentinelLookupError, Sentinels, shownAddress, type Address, type SentinelTarget } from './sentinel.ts';

export type RedisClient = RedisClientType;
export type { SentinelTarget } from './sentinel.ts';

/** One Redis by its URL (REDIS_URL), or the master a set of sentinels names. */
export type RedisTarget = string | SentinelTarget;

/** The pub/sub kinds whose subscriptions a client takes along to a new master. */
const SUBSCRIPTION_KINDS = ['CHANNELS', 'PATTERNS', 'SHARDED'] as const;

/** Least time between two questions to the sentinels prompted by failing reconnects. */
const FOLLOW_INTERVAL_MS = 200;

/**
 * A client of a Sentinel-managed master as its users hold it: a stable object whose commands
 * go to `current`, the node-redis client of the master now. A failover replaces `current`
 * (node-redis binds a client to one address for its life) and moves its subscriptions along.
 */
interface Follower {
  current: RedisClient;
  /** The master `current` connects to. */
  address: string;
  /** A client of a newer master, connecting; it becomes `current` once it is ready. */
  next: RedisClient | null;
  nextAddress: string | null;
}

/** What the Redis at the other end is now: master, slave (a replica) or sentinel. */
async function roleOf(client: RedisClient): Promise<string> {
  const [role] = await client.sendCommand<[string, ...unknown[]]>(['ROLE']);
  return role;
}

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
 * reasonOf for the start line: a Redis certificate that failed its check says what it was
 * checked against (`ca`: REDIS_TLS_CA's certificates, or null for the system's CAs).
 */
export function startReason(err: unknown, ca: Buffer | null): string {
  if (!isCertificateError(err)) return reasonOf(err);
  return `TLS certificate refused: ${reasonOf(err)}, checked against ${ca === null ? "the system's CAs (REDIS_TLS_CA names others)" : 'REDIS_TLS_CA'}`;
}

/**
 * REDIS_TLS_CA's certificates, or null for none; an unreadable or malformed file is a
 * RedisStartupError.
 */
export function redisCa(path: string | null | undefined): Buffer | null {
  if (path === null || path === undefined) return null;
  try {
    return readCa(path);
  } catch (err) {
    throw new RedisStartupError((err as Error).message);
  }
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
  /** How the startup error names the setting and the place: `REDIS_URL redis://host:6379`. */
  setting: string;
  /** With Sentinel: who names the master, and the master named last. */
  private readonly sentinels: Sentinels | null = null;
  private master: Address | null = null;
  /** With Sentinel: each client handed out, by the object its users hold. */
  private readonly followers = new Map<RedisClient, Follower>();
  /** The question to the sentinels under way, and when the last one ended. */
  private following: Promise<void> | null = null;
  private followedAt = 0;
  private readonly down = new Set<RedisClient>();
  /** The probes' intervals, and the timers of reconnects put off: cleared by stop(). */
  private readonly probes = new Set<NodeJS.Timeout>();
  private live = false;
  /** Told each time every client is connected (and subscribed) again after some were lost. */
  private readonly recoveredListeners = new Set<() => void>();
  /** The PING of /readyz under way: concurrent probes share it rather than queue more. */
  private checking: Promise<boolean> | null = null;

  private readonly url: string | null = null;

  /** With Sentinel: REDIS_TLS, the master over TLS. */
  private readonly masterTls: boolean = false;

  constructor(
    target: RedisTarget,
    private readonly log: Logger,
    readonly timeoutMs: number,
    /** REDIS_TLS_CA's certificates: what a TLS Redis's certificate is checked against (null: the system's CAs). */
    readonly ca: Buffer | null = null,
  ) {
    if (typeof target === 'string') {
      this.url = target;
      this.where = shownUrl(target);
      this.setting = `REDIS_URL ${this.where}`;
    } else {
      this.sentinels = new Sentinels(target, timeoutMs, ca);
      this.masterTls = target.tls;
      this.where = `sentinel master "${target.name}"`;
      this.setting = `REDIS_SENTINEL_MASTER "${target.name}"`;
    }
  }

  /**
   * With Sentinel: asks the sentinels for the master, before the first client() (which connects
   * there). Throws a RedisStartupError naming the setting at fault.
   */
  async locate(): Promise<void> {
    if (!this.sentinels) return;
    try {
      this.master = await this.sentinels.master();
    } catch (err) {
      if (!(err instanceof SentinelLookupError)) throw err;
      throw new RedisStartupError(
        err.unknown
          ? `REDIS_SENTINEL_MASTER "${this.sentinels.name}": no sentinel of REDIS_SENTINELS monitors that name`
          : `REDIS_SENTINELS: no sentinel answers (${startReason(err.cause, this.ca)})`,
      );
    }
    this.setting = `REDIS_SENTINEL_MASTER "${this.sentinels.name}" at ${shownAddress(this.master)}`;
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
    this.sentinels?.watch(
      (master) => this.moveTo(master),
      () => this.follow(), // a failover may have ended while no sentinel was listened to
    );
  }

  stop(): void {
    this.live = false;
    for (const timer of this.probes) clearInterval(timer);
    this.probes.clear();
    this.sentinels?.stop();
    for (const follower of this.followers.values()) this.dropNext(follower);
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
    // a master that stopped answering may have been replaced
    this.follow();
  }

  /** A client with this connection's policy: of REDIS_URL, or of the master the sentinels name. */
  client(): RedisClient {
    if (!this.sentinels) {
      const client = this.plainClient(this.url!);
      this.report(client, client);
      return client;
    }
    if (!this.master) throw new Error('locate() the master first');
    const address = shownAddress(this.master);
    const follower: Follower = { current: this.plainClient(this.master), address, next: null, nextAddress: null };
    // an empty target: the Proxy invariants then tie no property to the first client
    const handle = new Proxy({} as RedisClient, {
      get(_, prop) {
        const target = follower.current;
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    this.followers.set(handle, follower);
    this.report(follower.current, handle);
    return handle;
  }

  private plainClient(where: string | Address): RedisClient {
    const socket = {
      reconnectStrategy: (retries: number) => (this.live ? backoff(retries) : false),
      // no traffic for this long: dead. A ready client is pinged every timeoutMs / 2, so this
      // only ends a (re)connect whose handshake Redis does not answer.
      socketTimeout: 2 * this.timeoutMs,
    };
    const password = this.sentinels?.password ?? null;
    const tls = typeof where === 'string' ? where.startsWith('rediss://') : this.masterTls;
    return createClient({
      ...(typeof where === 'string' ? { url: where } : {}),
      ...(password === null ? {} : { password }),
      // While Redis is away commands fail at once instead of queueing for the whole outage:
      // an API request answers 5xx instead of hanging, and the presence heartbeat notices.
      disableOfflineQueue: true,
      socket: {
        ...socket,
        ...(typeof where === 'string' ? {} : { host: where.host, port: where.port }),
        ...(tls ? tlsSocket(this.ca) : {}),
      },
    });
  }

  /** True when `client` is what `handle` sends its commands to now. */
  private isCurrent(client: RedisClient, handle: RedisClient): boolean {
    return client === handle || this.followers.get(handle)?.current === client;
  }

  /** Reports the losses and returns of `client`, the client `handle` stands for now. */
  private report(client: RedisClient, handle: RedisClient): void {
    // node-redis emits 'error' for every failed (re)connect; unlistened, it ends the process
    client.on('error', (err: unknown) => {
      if (!this.live || !this.isCurrent(client, handle)) return; // startup reports its own single line; a closing node says nothing
      if (client.isReady) {
        this.log.error(`redis ${this.where}: client error`, err);
        return;
      }
      // each failed reconnect: the sentinels may name another master by now
      this.follow();
      if (this.down.has(handle)) return;
      if (this.down.size === 0) this.log.warn(`redis ${this.where}: connection lost (${reasonOf(err)}); reconnecting`);
      this.down.add(handle);
    });
    client.on('ready', () => {
      // before start(): the first connect, to what locate() found; not back from anything
      if (!this.live || !this.isCurrent(client, handle)) return;
      if (!this.sentinels) {
        this.back(handle);
        return;
      }
      // Back at the same address: Sentinel may have demoted that Redis meanwhile (a manual
      // failover disconnects its clients, and it takes them back as a replica). Only a master
      // counts as back; a replica is left, and the sentinels asked again, until they name another.
      // A subscriber cannot ask (RESP2 allows it only (un)subscribe and PING): it counts as back,
      // since a replica relays what is published on its master, and the sentinels are asked.
      this.follow();
      if (SUBSCRIPTION_KINDS.some((kind) => client.getPubSubListeners(kind).size > 0)) {
        this.back(handle);
        return;
      }
      roleOf(client).then(
        (role) => {
          if (!this.live || !this.isCurrent(client, handle)) return;
          if (role === 'master') {
            this.back(handle);
            return;
          }
          if (this.down.size === 0) this.log.warn(`redis ${this.where}: the master is a ${role} now; asking the sentinels`);
          this.down.add(handle);
          client.destroy();
          this.follow();
          const timer = setTimeout(() => {
            this.probes.delete(timer);
            if (this.live && this.isCurrent(client, handle) && !client.isOpen) client.connect().catch(() => {});
          }, backoff(3));
          this.probes.add(timer); // cleared by stop()
        },
        () => {}, // the connection went again: its 'error' says so
      );
    });
  }

  private back(handle: RedisClient): void {
    if (this.down.delete(handle) && this.down.size === 0) {
      this.log.info(`redis ${this.where}: connected again`);
      if (this.live) for (const listener of this.recoveredListeners) listener();
    }
  }

  /**
   * With Sentinel: asks the sentinels where the master is, and moves the clients there when it
   * moved. One question at a time, and not more often than every FOLLOW_INTERVAL_MS: it is
   * called on every failed reconnect of every client.
   */
  private follow(): void {
    const sentinels = this.sentinels;
    if (!sentinels || !this.live || this.following || Date.now() - this.followedAt < FOLLOW_INTERVAL_MS) return;
    this.following = sentinels
      .master()
      .then(
        (master) => this.moveTo(master),
        // no sentinel answers: the clients keep trying the master they know, and ask again
        () => {},
      )
      .finally(() => {
        this.following = null;
        this.followedAt = Date.now();
      });
  }

  /** Points every client at `master` (once its clients there are ready) where it is elsewhere. */
  private moveTo(master: Address): void {
    if (!this.live) return;
    const address = shownAddress(master);
    const before = this.master === null ? null : shownAddress(this.master);
    this.master = master;
    if (before !== address) this.log.warn(`redis ${this.where}: the sentinels name a new master ${address} (was ${before ?? 'none'})`);
    for (const [handle, follower] of this.followers) {
      if (follower.address === address || follower.nextAddress === address) continue;
      this.dropNext(follower);
      this.switchTo(handle, follower, master, address);
    }
  }

  /**
   * Connects a client to `master` for `follower`; once it is ready and confirms it is a master
   * (a sentinel in a minority may name an old one), it takes over the subscriptions and
   * becomes current, and the old client is let go (its waiting commands fail; they were
   * failing anyway).
   */
  private switchTo(handle: RedisClient, follower: Follower, master: Address, address: string): void {
    const next = this.plainClient(master);
    follower.next = next;
    follower.nextAddress = address;
    // its losses and returns are reported once it is current (report() ignores a client until
    // then): a client taken over at a failover is watched like the first one, so a later
    // outage of the new master is logged, followed and ends (readyz, catch-up) when it is back
    this.report(next, handle);
    const superseded = () => follower.next !== next || !this.live;
    next
      .connect()
      .then(async () => {
        const role = await roleOf(next);
        if (superseded()) return;
        if (role !== 'master') throw new Error(`${address} is a ${role}`);
        const old = follower.current;
        for (const kind of SUBSCRIPTION_KINDS) {
          const listeners = old.getPubSubListeners(kind);
          if (listeners.size > 0) await next.extendPubSubListeners(kind, listeners);
        }
        if (superseded()) return;
        follower.current = next;
        follower.address = address;
        follower.next = null;
        follower.nextAddress = null;
        if (old.isOpen) old.destroy();
        this.back(handle);
      })
      .catch(() => {
        if (superseded()) return;
        // not the master after all, or it went again: let the sentinels say where it is
        this.dropNext(follower);
        this.follow();
      });
  }

  private dropNext(follower: Follower): void {
    const next = follower.next;
    follower.next = null;
    follower.nextAddress = null;
    if (next?.isOpen) next.destroy();
  }
}

/** Connects the clients, or throws a RedisStartupError naming the setting and the reason. */
export async function connectAll(connection: Connection, count: number): Promise<RedisClient[]> {
  await connection.locate();
  let clients: RedisClient[];
  try {
    clients = Array.from({ length: count }, () => connection.client());
  } catch (err) {
    // node-redis parses the URL here: "Invalid URL", "Invalid protocol"
    throw new RedisStartupError(`${connection.setting}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const results = await Promise.allSettled(clients.map((c) => c.connect()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    for (const c of clients) if (c.isOpen) c.destroy();
    throw new RedisStartupError(`${connection.setting}: cannot connect (${startReason(failed.reason, connection.ca)})`);
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
export async function connectRedis(target: RedisTarget, log: Logger, commandTimeoutMs = DEFAULT_COMMAND_TIMEOUT_MS): Promise<RedisClient> {
  const connection = new Connection(target, log, commandTimeoutMs);
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
