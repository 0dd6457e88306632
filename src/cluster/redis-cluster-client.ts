// The connection policy for a Redis Cluster (REDIS_CLUSTER), beside redis-client.ts's for one
// Redis: node-redis's cluster client (createCluster), commands failing at once while a master
// is away, the outage logged once, and a failover followed. Import it (through components.ts)
// only when REDIS_CLUSTER is set.
//
// node-redis follows a slot that moved only when a node answers MOVED. A master that died
// (SIGKILL, a lost machine) answers nothing: its client retries the dead address forever, and
// the commands and sharded subscriptions of its slots fail with it, after its replica took
// over. So while any master's connection is down, the slot map is read again (CLUSTER SLOTS
// on a live node) every REFRESH_MS, until the cluster has promoted a replica and every master
// answers. The sharded subscriptions the dead master held are dropped by node-redis with its
// client; they are made again on the slots' new master, and the recovered listeners (catch-up
// of the pages, as after a Redis outage) run once every master answers again.
import { createCluster, RootNodesUnavailableError, type RedisClusterType } from 'redis';
import type { Logger } from '../log.ts';
import { shownUrl } from '../secrets.ts';
import { reasonOf, RedisStartupError, startReason, type RedisClient } from './redis-client.ts';
import { tlsSocket } from './redis-tls.ts';

export type RedisClusterClient = RedisClusterType;

/** How often the slot map is read again while a master is away, ms. */
const REFRESH_MS = 200;
/** How often the masters' connections are checked while all is well, ms (no network: flags only). */
const CHECK_MS = 1000;
/** Longest wait of /readyz for the masters' PINGs. */
const READY_PING_MS = 1000;
/** Longest wait for a client's pending commands at close before it is let go. */
const CLOSE_MS = 2000;

/** A seed of REDIS_CLUSTER as a URL: `host:port` becomes `redis://host:port`. */
export function seedUrl(seed: string): string {
  return /^rediss?:\/\//.test(seed) ? seed : `redis://${seed}`;
}

function backoff(retries: number): number {
  return Math.min(100 * 2 ** retries, 2000) + Math.floor(Math.random() * 100);
}

type ShardedListeners = ReturnType<RedisClient['getPubSubListeners']>;

/**
 * The connection state of a node's cluster clients (commands, publish, subscribe): lost while
 * some master of some client is not ready, recovered when all are again. Logs one line at
 * each end of an outage, however many masters and retries it takes.
 */
export class ClusterConnection {
  /** The seeds as log lines show them: scheme and host, credentials masked. */
  readonly where: string;
  private readonly clients: RedisClusterClient[] = [];
  private readonly recoveredListeners = new Set<() => void>();
  private live = false;
  private lostSince: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  private checking: Promise<boolean> | null = null;
  /** Before start(): why a seed last failed. node-redis's own start error names none. */
  seedError: unknown = null;

  constructor(
    private readonly seeds: readonly string[],
    private readonly log: Logger,
    readonly timeoutMs: number,
    /** REDIS_TLS_CA's certificates, for rediss:// seeds (null: the system's CAs). */
    readonly ca: Buffer | null = null,
  ) {
    const first = seeds[0] === undefined ? '' : shownUrl(seedUrl(seeds[0]));
    this.where = `cluster ${first}${seeds.length > 1 ? ` (+${seeds.length - 1} seeds)` : ''}`;
  }

  get lost(): boolean {
    return this.lostSince !== null || !this.live;
  }

  onRecovered(listener: () => void): void {
    this.recoveredListeners.add(listener);
  }

  client(): RedisClusterClient {
    const urls = this.seeds.map(seedUrl);
    // credentials and TLS of the seeds hold for every node the cluster names
    const withAuth = urls.map((u) => new URL(u)).find((u) => u.username !== '' || u.password !== '');
    const tls = urls.some((u) => u.startsWith('rediss://'));
    const client: RedisClusterClient = createCluster({
      rootNodes: urls.map((url) => ({ url })),
      defaults: {
        ...(withAuth?.username ? { username: decodeURIComponent(withAuth.username) } : {}),
        ...(withAuth?.password ? { password: decodeURIComponent(withAuth.password) } : {}),
        // as with one Redis: commands fail at once while their master is away (503, not a hang)
        disableOfflineQueue: true,
        socket: {
          ...(tls ? tlsSocket(this.ca) : {}),
          reconnectStrategy: (retries: number) => (this.live ? backoff(retries) : false),
          socketTimeout: 2 * this.timeoutMs,
        },
      },
    }) as unknown as RedisClusterClient;
    client.on('error', (err: unknown) => this.nodeLost(err));
    client.on('node-error', (err: unknown, node: { host?: string; port?: number }) => this.nodeLost(err, node));
    this.clients.push(client);
    return client;
  }

  start(): void {
    this.live = true;
    this.schedule(CHECK_MS);
  }

  stop(): void {
    this.live = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** True when every master answers a PING within READY_PING_MS (for /readyz). */
  answers(client: RedisClusterClient): Promise<boolean> {
    this.checking ??= new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), Math.min(READY_PING_MS, this.timeoutMs));
      Promise.all(client.masters.map(async (master) => (await client.nodeClient(master)).ping())).then(
        () => resolve(true),
        () => resolve(false),
      ).finally(() => clearTimeout(timer));
    }).finally(() => (this.checking = null));
    return this.checking;
  }

  /** A sharded subscription not made again after a failover: counted as a lost node, so the next tick tries again. */
  private resubscribeFailed(err: unknown): void {
    if (this.live) this.nodeLost(err);
  }

  private nodeLost(err: unknown, node?: { host?: string; port?: number }): void {
    if (!this.live) {
      this.seedError = err;
      return;
    }
    if (this.lostSince === null) {
      const which = node?.port === undefined ? '' : ` ${node.host ?? ''}:${node.port}`;
      this.log.warn(`redis ${this.where}: connection to node${which} lost (${reasonOf(err)}); following the cluster's failover`);
      this.lostSince = Date.now();
    }
    this.schedule(0);
  }

  private schedule(ms: number): void {
    if (!this.live) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.tick();
    }, ms);
  }

  /** Every master of every client ready, its sharded subscriber too. */
  private healthy(): boolean {
    return this.clients.every((client) =>
      client.masters.length > 0 &&
      client.masters.every((m) => m.client?.isReady === true && (m.pubSub === undefined || m.pubSub.client.isReady)),
    );
  }

  private async tick(): Promise<void> {
    if (!this.live) return;
    if (this.healthy()) {
      if (this.lostSince !== null) {
        this.log.info(`redis ${this.where}: every master answers again (after ${Date.now() - this.lostSince} ms)`);
        this.lostSince = null;
        for (const listener of this.recoveredListeners) listener();
      }
      this.schedule(CHECK_MS);
      return;
    }
    if (this.lostSince === null) {
      this.log.warn(`redis ${this.where}: a master does not answer; following the cluster's failover`);
      this.lostSince = Date.now();
    }
    this.refreshing ??= Promise.all(this.clients.map((c) => this.refresh(c)))
      .then(() => {}, () => {})
      .finally(() => (this.refreshing = null));
    await this.refreshing;
    this.schedule(this.healthy() ? 0 : REFRESH_MS);
  }

  /**
   * Reads the slot map again; the sharded subscriptions of masters it dropped are made on the
   * masters that serve their slots now.
   */
  private async refresh(client: RedisClusterClient): Promise<void> {
    if (!client.isOpen) return;
    const held = new Map<string, ShardedListeners>();
    for (const master of client.masters) {
      if (master.pubSub) held.set(master.address, new Map(master.pubSub.client.getPubSubListeners('SHARDED')));
    }
    const start = client.masters.find((m) => m.client?.isReady)?.client ?? client.masters[0]?.client;
    if (!start) return;
    await client._slots.rediscover(start);
    if (!this.live || !client.isOpen) return; // closed meanwhile (a shutdown): nothing to move
    const kept = new Set(client.masters.filter((m) => m.pubSub).map((m) => m.address));
    for (const [address, listeners] of held) {
      if (kept.has(address)) continue;
      // its client was destroyed with the node: subscribe again where the slots are now. Not
      // node-redis's resubscribeAllPubSubListeners, which drops each subscribe's promise: one
      // that failed there (CLUSTERDOWN mid-failover, a connection closing) was an unhandled
      // rejection, which ends the process. Here a failure is an outage to retry.
      for (const [channel, { buffers, strings }] of listeners) {
        for (const listener of buffers) client.sSubscribe(channel, listener, true).catch((err: unknown) => this.resubscribeFailed(err));
        for (const listener of strings) client.sSubscribe(channel, listener).catch((err: unknown) => this.resubscribeFailed(err));
      }
    }
  }
}

/** Connects the cluster clients, or throws a RedisStartupError naming REDIS_CLUSTER and the reason. */
export async function connectClusterClients(connection: ClusterConnection, count: number): Promise<RedisClusterClient[]> {
  let clients: RedisClusterClient[];
  try {
    clients = Array.from({ length: count }, () => connection.client());
  } catch (err) {
    throw new RedisStartupError(`REDIS_CLUSTER ${connection.where}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const results = await Promise.allSettled(clients.map((c) => c.connect()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    for (const c of clients) if (c.isOpen) c.destroy();
    // "All the root nodes are unavailable": the last seed's own error says why
    const reason = failed.reason instanceof RootNodesUnavailableError && connection.seedError !== null ? connection.seedError : failed.reason;
    throw new RedisStartupError(`REDIS_CLUSTER ${connection.where}: cannot connect (${startReason(reason, connection.ca)})`);
  }
  connection.start();
  return clients;
}

/** Closes a cluster client: its pending commands may finish (briefly). */
export async function quitCluster(client: RedisClusterClient): Promise<void> {
  if (!client.isOpen) return;
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([
    client.close().then(() => true, () => true),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), CLOSE_MS))),
  ]);
  clearTimeout(timer);
  if (!closed) client.destroy();
}

/** What the Redis store, presence and announced state run on: one Redis, or a cluster. */
export type RedisCommands = RedisClient | RedisClusterClient;

/** A write that its master ran but no replica confirmed in time: a failover now could lose it. */
export class NotReplicatedError extends Error {
  override name = 'NotReplicatedError';
}

/** How long ROLE's count of a master's connected replicas is trusted, ms. */
const ROLE_MS = 1000;

/**
 * After a write of the store: WAIT until a replica of the master of `key`'s slot has it, so
 * that an answered push survives that master's failover (replication is asynchronous; a
 * replica promoted without the write would not have it). A master with no replica connected
 * (ROLE, read at most once a second) is not waited on: nothing could confirm, and refusing
 * every stored push while a replica is away would be worse; that window is documented. A
 * replica connected but silent past `timeoutMs` rejects with NotReplicatedError.
 */
export function replicaConfirmation(client: RedisClusterClient, key: string, timeoutMs: number): () => Promise<void> {
  let replicas = 0;
  let checkedAt = -Infinity;
  return async () => {
    if (Date.now() - checkedAt > ROLE_MS) {
      const role = (await client.sendCommand(key, false, ['ROLE'])) as unknown;
      replicas = Array.isArray(role) && role[0] === 'master' && Array.isArray(role[2]) ? role[2].length : 0;
      checkedAt = Date.now();
    }
    if (replicas === 0) return;
    // on the connection the write went on, after it: the WAIT covers it
    const acked = Number(await client.sendCommand(key, false, ['WAIT', '1', String(timeoutMs)]));
    if (!(acked >= 1)) throw new NotReplicatedError(`no replica confirmed it within ${timeoutMs} ms`);
  };
}
