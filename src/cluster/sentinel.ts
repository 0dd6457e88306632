// Where the master of a Sentinel-managed Redis is: asked of the sentinels (SENTINEL
// get-master-addr-by-name) at start and whenever a client of the master loses its connection,
// and told by one of them (+switch-master) the moment a failover ends. Each question is a
// short connection of its own, so a dead or frozen sentinel costs one timeout and the next is
// asked; the one that answered is asked first next time. redis-client.ts makes the clients of
// the master follow the answers.
import { createClient } from 'redis';
import { tlsSocket } from './redis-tls.ts';

/** The settings that name a Sentinel-managed master (REDIS_SENTINELS and the rest). */
export interface SentinelTarget {
  sentinels: Address[];
  /** REDIS_SENTINEL_MASTER: the name the sentinels monitor. */
  name: string;
  /** REDIS_PASSWORD: the master's (and its replicas') requirepass. */
  password: string | null;
  /** REDIS_SENTINEL_PASSWORD: the sentinels' own requirepass. */
  sentinelPassword: string | null;
  /** REDIS_TLS: the master (and whatever the sentinels name after a failover) over TLS. */
  tls: boolean;
  /** REDIS_SENTINEL_TLS: the sentinels over TLS. Apart from `tls`, as Redis configures them apart. */
  sentinelTls: boolean;
}

export interface Address {
  host: string;
  port: number;
}

/** `host:port`, an IPv6 host in brackets. */
export function shownAddress(address: Address): string {
  return `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
}

/**
 * No sentinel named the master: `unknown` when some answered without knowing the name (a typo
 * in REDIS_SENTINEL_MASTER, or sentinels not configured yet), else none could be reached and
 * `cause` is the last reason.
 */
export class SentinelLookupError extends Error {
  override name = 'SentinelLookupError';
  constructor(
    readonly unknown: boolean,
    override readonly cause: unknown,
  ) {
    super(unknown ? 'no sentinel knows the master name' : 'no sentinel answers');
  }
}

/** Backoff of the +switch-master subscription between sentinels: 100 ms doubling to 2 s. */
function watchBackoff(attempt: number): number {
  return Math.min(100 * 2 ** attempt, 2000);
}

type SentinelClient = ReturnType<typeof createClient>;

export class Sentinels {
  /** The sentinels, the one that last answered first. */
  private readonly order: Address[];
  private watcher: SentinelClient | null = null;
  private watchTimer: NodeJS.Timeout | null = null;
  private watching = false;

  constructor(
    private readonly target: SentinelTarget,
    /** Longest wait for one sentinel's answer (connect, then reply) before the next is asked. */
    private readonly timeoutMs: number,
    /** REDIS_TLS_CA, for the sentinels when they speak TLS. */
    private readonly ca: Buffer | null = null,
  ) {
    this.order = [...target.sentinels];
  }

  get name(): string {
    return this.target.name;
  }

  /** The master's password, for the clients of the master. */
  get password(): string | null {
    return this.target.password;
  }

  /** The master's address as the first sentinel that knows it says; rejects with a SentinelLookupError. */
  async master(): Promise<Address> {
    let unknown = false;
    let cause: unknown = null;
    for (const sentinel of [...this.order]) {
      try {
        const reply = await this.ask(sentinel, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.target.name]);
        if (Array.isArray(reply) && reply.length === 2) {
          this.first(sentinel);
          return { host: String(reply[0]), port: Number(reply[1]) };
        }
        unknown = true; // a null reply: this sentinel does not monitor that name
      } catch (err) {
        cause = err;
      }
    }
    throw new SentinelLookupError(unknown, cause);
  }

  /**
   * Subscribes to +switch-master on one sentinel at a time: `onSwitch` gets the new master of
   * our name the moment a failover ends. When that sentinel goes, the next is subscribed to;
   * `onSubscribed` runs after each subscription, as a failover may have ended unheard.
   * stop() ends it.
   */
  watch(onSwitch: (master: Address) => void, onSubscribed: () => void): void {
    this.watching = true;
    let attempt = 0;
    const next = () => {
      this.watchTimer = null;
      if (!this.watching) return;
      const sentinel = this.order[attempt % this.order.length]!;
      const client = this.client(sentinel);
      this.watcher = client;
      const retry = () => {
        if (this.watcher !== client || !this.watching) return;
        this.watcher = null;
        if (client.isOpen) client.destroy();
        this.watchTimer = setTimeout(next, watchBackoff(attempt++));
      };
      // with no reconnect strategy a lost connection ends the client: its 'error' is the signal
      client.on('error', retry);
      this.bounded(client.connect())
        .then(() =>
          client.subscribe('+switch-master', (message: string) => {
            // "<name> <old ip> <old port> <new ip> <new port>"
            const [name, , , host, port] = message.split(' ');
            if (name === this.target.name && host !== undefined && port !== undefined) onSwitch({ host, port: Number(port) });
          }),
        )
        .then(
          () => {
            if (this.watcher !== client) return;
            attempt = 0;
            onSubscribed();
          },
          retry,
        );
    };
    next();
  }

  stop(): void {
    this.watching = false;
    if (this.watchTimer) clearTimeout(this.watchTimer);
    this.watchTimer = null;
    const watcher = this.watcher;
    this.watcher = null;
    if (watcher?.isOpen) watcher.destroy();
  }

  private first(sentinel: Address): void {
    this.order.splice(this.order.indexOf(sentinel), 1);
    this.order.unshift(sentinel);
  }

  private client(sentinel: Address): SentinelClient {
    return createClient({
      socket: {
        host: sentinel.host,
        port: sentinel.port,
        connectTimeout: this.timeoutMs,
        reconnectStrategy: false,
        ...(this.target.sentinelTls ? tlsSocket(this.ca) : {}),
      },
      ...(this.target.sentinelPassword === null ? {} : { password: this.target.sentinelPassword }),
      disableOfflineQueue: true,
    });
  }

  /** `promise`, or a rejection once timeoutMs has passed (a frozen sentinel). */
  private bounded<T>(promise: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      promise,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no answer in time')), this.timeoutMs))),
    ]).finally(() => clearTimeout(timer));
  }

  /** One command on a connection of its own, closed after. */
  private async ask(sentinel: Address, args: string[]): Promise<unknown> {
    const client = this.client(sentinel);
    client.on('error', () => {}); // reported by connect() or the command
    try {
      await this.bounded(client.connect());
      return await this.bounded(client.sendCommand(args));
    } finally {
      if (client.isOpen) client.destroy();
    }
  }
}
