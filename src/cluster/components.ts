// What a cluster node swaps in when REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER is set, built
// on three clients of one Redis (found directly or through its sentinels) or of a Redis
// Cluster: the Socket.IO adapter (rooms and broadcasts across nodes), the Redis presence, the
// Redis message store and the webhooks' announced state. The only module that loads
// `@socket.io/redis-adapter`; server.ts imports it only with Redis.
import { createAdapter, createShardedAdapter } from '@socket.io/redis-adapter';
import { DisconnectsClientError } from 'redis';
import type { Logger } from '../log.ts';
import { StoreUnavailableError, type ExpiredListener, type MessageStore, type StoreLimits } from '../message-store.ts';
import { RedisPresence, type RedisPresenceOptions } from './redis-presence.ts';
import { RedisMessageStore } from './redis-store.ts';
import { connectAll, Connection, DEFAULT_COMMAND_TIMEOUT_MS, quit, reasonOf, redisCa, type RedisClient, type RedisTarget } from './redis-client.ts';
import {
  ClusterConnection, connectClusterClients, NotReplicatedError, quitCluster, replicaConfirmation, type RedisClusterClient, type RedisCommands,
} from './redis-cluster-client.ts';
import type { AnnouncedState } from '../webhooks/presence-webhooks.ts';
import type { AdminSessions } from '../admin/sessions.ts';
import { RedisAdminSessions } from './redis-admin-sessions.ts';

/** For server.ts, which loads this module only with Redis configured: a start that cannot reach Redis. */
export { RedisStartupError, type RedisTarget } from './redis-client.ts';

/**
 * Commands the adapter sends without awaiting them: publish on each broadcast, (un)subscribe
 * when it starts and closes. One that fails (Redis away) would be an unhandled rejection,
 * which ends a Node process.
 */
const UNAWAITED = new Set([
  'publish', 'sPublish', 'subscribe', 'pSubscribe', 'sSubscribe', 'unsubscribe', 'pUnsubscribe', 'sUnsubscribe',
]);

type AdapterFactory = ReturnType<typeof createAdapter>;

/**
 * The adapter factory with a serverCount() that never rejects. An emit that waits for acks
 * (a stored push) asks the adapter how many nodes will answer (PUBSUB NUMSUB) and chains on
 * that promise without a catch: while Redis is away the rejection was unhandled and ended
 * the process. A failed count is reported to `onError` and answers -1, a count no reply
 * reaches, so the emit's own ack timeout ends it with the acks it got. A plain function:
 * Socket.IO calls the factory with `new`.
 */
function countingSafely(factory: AdapterFactory, onError: (err: unknown) => void): AdapterFactory {
  return function (nsp: Parameters<AdapterFactory>[0]) {
    const adapter = factory(nsp);
    const count = adapter.serverCount.bind(adapter);
    adapter.serverCount = () =>
      count().catch((err: unknown) => {
        onError(err);
        return -1;
      });
    return adapter;
  } as AdapterFactory;
}

/** The client as the adapter should see it: the unawaited commands' failures go to `onError`. */
function catchUnawaited<C extends RedisCommands>(client: C, onError: (err: unknown) => void): C {
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
function unavailableOnFailure(store: RedisMessageStore): MessageStore {
  const wrap =
    <A extends unknown[], R>(method: (...args: A) => Promise<R>, writes: boolean) =>
    async (...args: A): Promise<R> => {
      try {
        return await method.apply(store, args);
      } catch (err) {
        // a connection dropped for not answering: the command was sent, and Redis may run it yet;
        // a write no replica confirmed is on its master, which may fail over without it
        const unanswered = err instanceof DisconnectsClientError || err instanceof NotReplicatedError;
        const reason = err instanceof DisconnectsClientError ? 'no answer in time' : reasonOf(err);
        const outcome = writes ? (unanswered ? '; it may or may not have been stored' : '; nothing was stored') : '';
        // no Redis URL: this reaches API clients; the connection's log line names it
        throw new StoreUnavailableError(`the message store is unavailable: ${reason}${outcome}`);
      }
    };
  return {
    add: wrap(store.add, true),
    pendingCount: wrap(store.pendingCount, false),
    pendingPage: wrap(store.pendingPage, false),
    cursorOf: wrap(store.cursorOf, false),
    ackThrough: wrap(store.ackThrough, true),
    ack: wrap(store.ack, true),
    claim: wrap(store.claim, true),
    settle: wrap(store.settle, true),
    release: wrap(store.release, true),
    schedule: wrap(store.schedule, true),
    cancel: wrap(store.cancel, true),
    scheduled: wrap(store.scheduled, false),
    claimDue: wrap(store.claimDue, true),
    fired: wrap(store.fired, true),
    stats: wrap(store.stats, false),
    close: () => store.close(),
  };
}

/**
 * Which uids the webhooks announced online, shared by the nodes: a uid announced at node A
 * whose last page closes at node B gets its user.offline from B, once.
 */
export class RedisAnnouncedState implements AnnouncedState {
  /** One key per uid (`<prefix>announced:<uid>`), single-key commands: in a cluster, on the uid's own slot. */
  constructor(
    private readonly client: RedisCommands,
    private readonly prefix: string,
  ) {}

  async markOnline(uid: string): Promise<boolean> {
    return (await this.client.set(`${this.prefix}announced:${uid}`, '1', { NX: true })) === 'OK';
  }

  async markOffline(uid: string): Promise<boolean> {
    return (await this.client.del(`${this.prefix}announced:${uid}`)) === 1;
  }
}

/** Longest text of a refusal quoted from Redis in the persistence line. */
const REASON_CHARS = 120;

/**
 * Logs, once at start, what would make this Redis lose stored messages, scheduled pushes and
 * idempotency keys: no persistence at all (a restart empties it), or a maxmemory policy that
 * evicts keys (allkeys-* may take any of them, volatile-* the idempotency keys and presence
 * entries, which carry a TTL). A managed Redis may refuse CONFIG (renamed, or not allowed to
 * this user): then it says it could not check.
 * Never fails the start: a Redis we cannot inspect may still be configured well.
 */
export async function checkPersistence(client: RedisClient, where: string, log: Logger): Promise<void> {
  let config: Record<string, string>;
  try {
    // one parameter per call: Redis before 7 takes only one
    const replies = await Promise.all(
      ['appendonly', 'save', 'maxmemory', 'maxmemory-policy'].map((name) => client.configGet(name)),
    );
    config = Object.assign({}, ...replies) as Record<string, string>;
  } catch (err) {
    const reason = reasonOf(err).split('\n')[0]!.slice(0, REASON_CHARS);
    log.warn(
      `redis ${where}: could not check its persistence (CONFIG GET refused: ${reason}); ` +
        'stored messages, scheduled pushes and idempotency keys survive a Redis restart only with appendonly yes',
    );
    return;
  }
  const aof = config['appendonly'] === 'yes';
  const rdb = (config['save'] ?? '').trim() !== '';
  if (!aof && !rdb) {
    log.warn(
      `redis ${where}: persistence is off (appendonly no, save ""): stored messages, scheduled pushes ` +
        'and idempotency keys are lost when Redis restarts; set appendonly yes and appendfsync everysec',
    );
  }
  const policy = config['maxmemory-policy'] ?? 'noeviction';
  if (config['maxmemory'] !== undefined && config['maxmemory'] !== '0' && policy !== 'noeviction') {
    log.warn(
      `redis ${where}: maxmemory-policy ${policy} with maxmemory ${config['maxmemory']}: a full Redis evicts ` +
        'stored messages, scheduled pushes and idempotency keys; set maxmemory-policy noeviction',
    );
  }
}

/** The clients of one Redis, connected: the parts that report events are built on them later. */
export interface RedisCluster {
  /** For io.adapter(): rooms and broadcasts reach the sockets of every node. */
  adapter: ReturnType<typeof createAdapter>;
  /** For the online/offline webhooks: each transition announced once in the cluster. */
  announced: AnnouncedState;
  /** The admin page's sessions, shared by every process: a sign-out holds everywhere. */
  adminSessions: AdminSessions;
  /**
   * `listener` runs each time this node's clients are all connected again after an outage: live
   * emits published or due to arrive meanwhile may be lost, and logins may have found the store
   * unreadable.
   */
  onRecovered(listener: () => void): void;
  /** Why Redis cannot be used now, without its URL, or null while it is connected and answers PING (for /readyz). */
  notReady(): Promise<string | null>;
  /**
   * Builds this node's presence and the store on the clients, told where to report what they
   * find on their own (a dead node's last pages, messages expired unacked). Once.
   */
  build(nodeId: string, limits: StoreLimits, options?: RedisPartsOptions): { presence: RedisPresence; store: MessageStore };
  /**
   * Removes this node's presence and stops the store, then closes the clients. Call it after
   * io.close(): the adapter unsubscribes through them when io closes. Idempotent.
   */
  close(): Promise<void>;
}

export type RedisPartsOptions = Omit<RedisPresenceOptions, 'prefix'> & { onExpired?: ExpiredListener };

export interface RedisComponents extends Omit<RedisCluster, 'build'> {
  presence: RedisPresence;
  store: MessageStore;
}

export interface ConnectOptions {
  /** The prefix of every key and channel. @default 'push:' */
  prefix?: string;
  /** REDIS_COMMAND_TIMEOUT_MS. @default DEFAULT_COMMAND_TIMEOUT_MS */
  commandTimeoutMs?: number;
  /** REDIS_TLS_CA: the path of the CA certificates TLS connections check Redis against. @default null (the system's CAs) */
  tlsCa?: string | null;
}

/**
 * Connects three clients to `target` (commands, and publish + subscribe for the adapter): a
 * URL, or the master the sentinels name, which the clients follow through a failover. Rejects
 * with one RedisStartupError line when Redis cannot be reached now; once connected, the
 * clients reconnect by themselves and the outage is logged once, not per retry.
 */
export async function connectCluster(
  target: RedisTarget,
  log: Logger,
  options: ConnectOptions = {},
): Promise<RedisCluster> {
  const connection = new Connection(target, log, options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS, redisCa(options.tlsCa));
  const [main, pub, sub] = (await connectAll(connection, 3)) as [RedisClient, RedisClient, RedisClient];
  await checkPersistence(main, connection.where, log);
  const prefix = options.prefix ?? 'push:';
  const failed = unawaitedFailed(connection, log);
  const adapter = countingSafely(
    createAdapter(catchUnawaited(pub, failed), catchUnawaited(sub, failed), { key: `${prefix}socket.io` }),
    failed,
  );
  return assemble(main, adapter, log, {
    connection,
    answers: () => connection.answers(main),
    // one Redis: the key names of every release so far, untagged
    keys: { prefix, store: prefix, presence: `${prefix}presence:` },
    quit: () => Promise.all([main, pub, sub].map(quit)).then(() => {}),
  });
}

/**
 * connectCluster for a Redis Cluster (REDIS_CLUSTER, Redis 7+): node-redis's cluster clients,
 * the sharded Socket.IO adapter (SPUBLISH/SSUBSCRIBE: a uid's room is a channel of its own,
 * on its own slot, so broadcast traffic spreads over the masters), and the store and presence
 * on hash-tagged keys (each in one slot; docs/cluster.md). Persistence is checked on every master.
 */
export async function connectRedisCluster(
  seeds: readonly string[],
  log: Logger,
  options: ConnectOptions = {},
): Promise<RedisCluster> {
  const connection = new ClusterConnection(seeds, log, options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS, redisCa(options.tlsCa));
  const [main, pub, sub] = (await connectClusterClients(connection, 3)) as [RedisClusterClient, RedisClusterClient, RedisClusterClient];
  for (const master of main.masters) {
    await checkPersistence((await main.nodeClient(master)) as unknown as RedisClient, `${connection.where} master ${master.address}`, log);
  }
  const prefix = options.prefix ?? 'push:';
  const failed = unawaitedFailed(connection, log);
  const sharded = createShardedAdapter(catchUnawaited(pub, failed), catchUnawaited(sub, failed), {
    channelPrefix: `${prefix}socket.io`,
  }) as unknown as AdapterFactory; // the same Adapter contract, another subclass
  return assemble(main, countingSafely(sharded, failed), log, {
    connection,
    answers: () => connection.answers(main),
    keys: { prefix, store: tagged(prefix), presence: tagged(`${prefix}presence:`) },
    // a stored push is answered once a replica has it too: it survives its master's failover
    confirm: replicaConfirmation(main, `${tagged(prefix)}counters`, Math.min(1000, Math.ceil(connection.timeoutMs / 2))),
    quit: () => Promise.all([main, pub, sub].map(quitCluster)).then(() => {}),
  });
}

/**
 * `push:` -> `{push}:`: the same key names, with all but the last colon as a hash tag, so that
 * every key under the prefix is in one slot of a Redis Cluster.
 */
export function tagged(prefix: string): string {
  const base = prefix.endsWith(':') ? prefix.slice(0, -1) : prefix;
  return `{${base}}:`;
}

/** Reports a failed unawaited adapter command, unless it is part of an outage logged already. */
function unawaitedFailed(connection: { lost: boolean; where: string }, log: Logger): (err: unknown) => void {
  return (err) => {
    // in flight when the connection went, or cut by close(): the outage is logged already
    if (!connection.lost) log.warn(`redis ${connection.where}: a Socket.IO adapter command failed (${reasonOf(err)})`);
  };
}

interface Assembly {
  connection: { lost: boolean; onRecovered(listener: () => void): void; stop(): void };
  answers(): Promise<boolean>;
  /** prefix: the announced state's and the adapter's; store, presence: their key prefixes. */
  keys: { prefix: string; store: string; presence: string };
  /** The store's RedisStoreOptions.confirm. */
  confirm?: () => Promise<void>;
  quit(): Promise<void>;
}

/** The RedisCluster of connected clients, one Redis or a cluster alike. */
function assemble(main: RedisCommands, adapter: AdapterFactory, log: Logger, a: Assembly): RedisCluster {
  let parts: { presence: RedisPresence; store: RedisMessageStore } | null = null;
  let closing: Promise<void> | null = null;
  return {
    adapter,
    announced: new RedisAnnouncedState(main, a.keys.prefix),
    adminSessions: new RedisAdminSessions(main, a.keys.prefix),
    onRecovered: (listener) => a.connection.onRecovered(listener),
    notReady: async () => {
      // open to anyone on the API port: says what, not where (the log names the Redis)
      if (a.connection.lost) return 'redis is not connected';
      return (await a.answers()) ? null : 'redis does not answer';
    },
    build: (nodeId, limits, { onExpired, ...presenceOptions } = {}) => {
      if (parts) throw new Error('the Redis parts are built once');
      parts = {
        presence: new RedisPresence(main, nodeId, log, { ...presenceOptions, keyPrefix: a.keys.presence }),
        store: new RedisMessageStore(main, limits, log, {
          prefix: a.keys.store,
          ...(onExpired ? { onExpired } : {}),
          ...(a.confirm ? { confirm: a.confirm } : {}),
        }),
      };
      return { presence: parts.presence, store: unavailableOnFailure(parts.store) };
    },
    close: () =>
      (closing ??= (async () => {
        await parts?.presence.close();
        await parts?.store.close();
        a.connection.stop();
        await a.quit();
      })()),
  };
}

/** connectCluster and build in one step: for tests and tools. */
export async function createRedisComponents(
  target: RedisTarget,
  nodeId: string,
  log: Logger,
  limits: StoreLimits,
  options: RedisPartsOptions & { prefix?: string; commandTimeoutMs?: number } = {},
): Promise<RedisComponents> {
  const { prefix, commandTimeoutMs, ...parts } = options;
  const cluster = await connectCluster(target, log, {
    ...(prefix === undefined ? {} : { prefix }),
    ...(commandTimeoutMs === undefined ? {} : { commandTimeoutMs }),
  });
  const { presence, store } = cluster.build(nodeId, limits, parts);
  const { adapter, announced, adminSessions, onRecovered, notReady, close } = cluster;
  return { adapter, announced, adminSessions, onRecovered, notReady, close, presence, store };
}
