// Prometheus metrics. Each Metrics owns its Registry, so several servers in one process (tests)
// do not collide. Events (logins, pushes, emits, acks, webhooks) are counted by the server
// calling typed methods, cheap enough for the hot path; state (connections, online counts,
// the store) is read from `sources` at each scrape, so it can never drift.
import { performance } from 'node:perf_hooks';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from './log.ts';
import type { PushOutcome } from './messages.ts';
import type { StoreStats } from './message-store.ts';
import type { OnlineCounts } from './presence.ts';
import type { WebhookDropReason, WebhookEvent, WebhookEventType, WebhookObserver } from './webhooks/events.ts';

/** How a client is connected: a Socket.IO transport, or an SSE stream (GET /events). */
export type Transport = 'websocket' | 'polling' | 'sse';
export type LoginResult = 'ok' | 'refused' | 'failed';
export type PushApiKind = 'legacy' | 'v1';

const TRANSPORTS: readonly Transport[] = ['websocket', 'polling', 'sse'];
const LOGIN_RESULTS: readonly LoginResult[] = ['ok', 'refused', 'failed'];
const PUSH_APIS: readonly PushApiKind[] = ['legacy', 'v1'];
const PUSH_RESULTS: readonly PushOutcome[] = ['ok', 'offline', 'fail', 'stored', 'scheduled'];
const WEBHOOK_TYPES: readonly WebhookEventType[] = ['user.online', 'user.offline', 'message.stored_expired', 'client.message'];
const DROP_REASONS: readonly WebhookDropReason[] = ['attempts', 'overflow', 'closed'];
const SOURCES = ['connections', 'online', 'store', 'redis'] as const;
type SourceName = (typeof SOURCES)[number];

/**
 * Push-to-emit latency buckets, seconds: fine under 10 ms, where a healthy server is, and
 * coarse up to seconds to see a stall.
 */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** State read at each scrape (render()). A source that throws keeps its last values. */
export interface MetricsSources {
  /** This node's open connections by transport; see connectionsByTransport(). */
  connections?: () => Record<Transport, number>;
  /** Presence counts (cluster-wide with a shared presence: exported as CLUSTER_WIDE says). */
  online?: () => Promise<OnlineCounts>;
  /**
   * Store stats: its contents are cluster-wide with a shared store (see CLUSTER_WIDE); its
   * dropped/expired counts are what this node dropped and swept since it started, so a sum
   * over nodes is the cluster's.
   */
  store?: () => Promise<StoreStats>;
  /**
   * With REDIS_URL: why Redis cannot be used now, or null while it is connected and answers
   * (what /readyz asks). Without it, `<prefix>redis_up` is not exported.
   */
  redis?: () => Promise<string | null>;
}

export interface MetricsOptions {
  /**
   * Prefix of this server's metric names; process and Node.js metrics keep their standard
   * names (process_*, nodejs_*) so stock dashboards work.
   * @default 'push_'
   */
  prefix?: string;
  /**
   * Include prom-client's default metrics: event-loop lag (nodejs_eventloop_lag_*), heap, GC,
   * CPU, file descriptors.
   * @default true
   */
  processMetrics?: boolean;
  /** @default {} (those gauges stay empty) */
  sources?: MetricsSources;
  /** Where a failing source is reported, one line per scrape. @default no logging */
  log?: Logger;
  /**
   * What `<prefix>build_info{version, node_version} 1` says: this server's version (package.json).
   * @default 'unknown'
   */
  version?: string;
}

/**
 * Said in the HELP of every gauge that reads shared state (presence, store): with REDIS_URL each
 * node reports the same cluster figure, so PromQL aggregates it with max(), never sum(). Every
 * counter, and every other gauge, is this node's own: sum() over nodes is the cluster's.
 */
export const CLUSTER_WIDE = 'Cluster-wide with REDIS_URL (the same on every node: aggregate with max(), not sum()).';

/**
 * prom-client's default metrics describe the process, not a server, and cannot be stopped once
 * collected (an event-loop-delay histogram and a GC observer that hold no timer, but live
 * forever). So they are collected once per process into this registry and merged into every
 * Metrics' output. With several Metrics in one process, each scrape resets the shared
 * event-loop histogram, so its min/max/percentiles cover the time since any scrape.
 */
let processRegistry: Registry | null = null;

function sharedProcessRegistry(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/**
 * Counts `sockets` by transport, with `sse` streams beside them; e.g.
 * `connectionsByTransport(io.of('/').sockets.values(), streams)`.
 */
export function connectionsByTransport(
  sockets: Iterable<{ conn: { transport: { name: string } } }>,
  sse = 0,
): Record<Transport, number> {
  const counts: Record<Transport, number> = { websocket: 0, polling: 0, sse };
  for (const socket of sockets) {
    const name = socket.conn.transport.name;
    if (name === 'websocket' || name === 'polling') counts[name]++;
  }
  return counts;
}

/** Pre-created children, one per label combination: the hot path allocates no label object. */
function children<L extends string, C>(values: readonly L[], make: (value: L) => C): Record<L, C> {
  return Object.fromEntries(values.map((v) => [v, make(v)])) as Record<L, C>;
}

/** Shows a counter's series at 0 from the start, so rate() and alerts see its first increase. */
function zeroed(child: Counter.Internal): Counter.Internal {
  child.inc(0);
  return child;
}

export class Metrics {
  /** The `content-type` of render()'s body (Prometheus text format 0.0.4). */
  readonly contentType: string;
  /**
   * Counts webhook outcomes by event type; pass it to WebhookSender as its observer. `sent`
   * counts 2xx answers, `failed` every failed attempt (retries included), `dropped` every
   * delivery given up, by reason.
   */
  readonly webhooks: WebhookObserver;

  private readonly registry = new Registry();
  private readonly exposed: Registry;
  private readonly sources: MetricsSources;
  private readonly log: Logger | null;

  private readonly connections: Gauge<'transport'>;
  private readonly onlineUsers: Gauge;
  private readonly onlinePages: Gauge;
  private readonly storedMessages: Gauge;
  private readonly storedBytes: Gauge;
  private readonly storedFileBytes: Gauge;
  private readonly redisUp: Gauge | null;
  private readonly scheduled: Gauge;
  private readonly scheduledBytes: Gauge;
  private readonly scheduledDroppedTotal: Counter.Internal;
  private readonly storedDropped: Counter;
  private readonly storedExpired: Counter;
  private readonly sourceErrors: Record<SourceName, Counter.Internal>;
  private readonly logins: Record<LoginResult, Counter.Internal>;
  private readonly pushes: Record<PushApiKind, Record<PushOutcome, Counter.Internal>>;
  private readonly emits: Counter.Internal;
  private readonly acks: Counter.Internal;
  private readonly slowCut: Counter.Internal;
  private readonly emitLatency: Histogram.Internal<string>;

  constructor(options: MetricsOptions = {}) {
    const prefix = options.prefix ?? 'push_';
    this.sources = options.sources ?? {};
    this.log = options.log ?? null;
    const registers = [this.registry];

    this.connections = new Gauge({
      name: `${prefix}connections`,
      help: 'Client connections open on this node, by transport (websocket, polling, sse: streams of /events).',
      labelNames: ['transport'],
      registers,
    });
    new Gauge({
      name: `${prefix}build_info`,
      help: 'Always 1; its labels say which version runs, on which Node.js.',
      labelNames: ['version', 'node_version'],
      registers,
    })
      .labels(options.version ?? 'unknown', process.version)
      .set(1);
    this.onlineUsers = new Gauge({ name: `${prefix}online_users`, help: `Distinct logged-in uids. ${CLUSTER_WIDE}`, registers });
    this.onlinePages = new Gauge({ name: `${prefix}online_pages`, help: `Logged-in pages (sockets and SSE streams). ${CLUSTER_WIDE}`, registers });
    this.storedMessages = new Gauge({
      name: `${prefix}stored_messages`,
      help: `Kept (uid, message) pairs waiting for an ack. ${CLUSTER_WIDE}`,
      registers,
    });
    this.storedBytes = new Gauge({
      name: `${prefix}stored_bytes`,
      help: `Estimated bytes the kept messages hold (an upper bound), what MAX_STORE_BYTES counts. ${CLUSTER_WIDE}`,
      registers,
    });
    this.storedFileBytes = new Gauge({
      name: `${prefix}stored_file_bytes`,
      help: "The embedded store's file (data.mdb), bytes; MAX_STORE_BYTES bounds it too. 0 with no file (memory, Redis).",
      registers,
    });
    this.redisUp = this.sources.redis
      ? new Gauge({
          name: `${prefix}redis_up`,
          help: "1 while this node's Redis (REDIS_URL) is connected and answers, 0 while it is lost or does not answer.",
          registers,
        })
      : null;
    this.scheduled = new Gauge({ name: `${prefix}scheduled_pushes`, help: `Scheduled pushes waiting. ${CLUSTER_WIDE}`, registers });
    this.scheduledBytes = new Gauge({
      name: `${prefix}scheduled_bytes`,
      help: `Bytes (as JSON) the waiting scheduled pushes hold. ${CLUSTER_WIDE}`,
      registers,
    });
    this.scheduledDroppedTotal = zeroed(
      new Counter({
        name: `${prefix}scheduled_dropped_total`,
        help: 'Scheduled pushes given up after their deliveries failed, or after claims never confirmed made, on this node.',
        registers,
      }).labels(),
    );
    this.storedDropped = new Counter({
      name: `${prefix}stored_dropped_total`,
      help: 'Kept messages this node dropped to make room (MAX_PENDING_PER_UID, MAX_STORE_BYTES), since it started.',
      registers,
    });
    this.storedExpired = new Counter({
      name: `${prefix}stored_expired_total`,
      help: "Kept messages that expired unacked, removed by this node's sweep, since it started.",
      registers,
    });
    const sourceErrors = new Counter({
      name: `${prefix}metrics_source_errors_total`,
      help: 'Scrapes where reading a source failed (its metrics kept their last values).',
      labelNames: ['source'],
      registers,
    });
    this.sourceErrors = children(SOURCES, (s) => zeroed(sourceErrors.labels(s)));

    const logins = new Counter({
      name: `${prefix}logins_total`,
      help: 'Socket logins, by result.',
      labelNames: ['result'],
      registers,
    });
    this.logins = children(LOGIN_RESULTS, (r) => zeroed(logins.labels(r)));
    const pushes = new Counter({
      name: `${prefix}pushes_total`,
      help: 'Push requests answered, by API and result.',
      labelNames: ['api', 'result'],
      registers,
    });
    this.pushes = children(PUSH_APIS, (api) => children(PUSH_RESULTS, (result) => zeroed(pushes.labels(api, result))));
    this.emits = new Counter({
      name: `${prefix}emits_total`,
      help: 'Socket.IO emits made for pushes (one per emit to a uid, topic or everyone).',
      registers,
    }).labels();
    this.acks = new Counter({
      name: `${prefix}acks_total`,
      help: 'Acks of kept messages received from pages.',
      registers,
    }).labels();
    this.slowCut = new Counter({
      name: `${prefix}slow_connections_cut_total`,
      help: 'Connections closed because more than MAX_SOCKET_BUFFER_BYTES waited to be sent to them.',
      registers,
    }).labels();
    this.emitLatency = new Histogram({
      name: `${prefix}emit_latency_seconds`,
      help: 'Time from the start of a push request to its emit.',
      buckets: LATENCY_BUCKETS,
      registers,
    }).labels();

    const sent = new Counter({
      name: `${prefix}webhook_sent_total`,
      help: 'Webhook deliveries answered 2xx, by event type (one per url).',
      labelNames: ['type'],
      registers,
    });
    const failed = new Counter({
      name: `${prefix}webhook_failed_total`,
      help: 'Failed webhook attempts (non-2xx, network error, timeout), by event type; retries included.',
      labelNames: ['type'],
      registers,
    });
    const dropped = new Counter({
      name: `${prefix}webhook_dropped_total`,
      help: 'Webhook deliveries given up, by event type and reason (attempts, overflow, closed).',
      labelNames: ['type', 'reason'],
      registers,
    });
    const sentBy = children(WEBHOOK_TYPES, (t) => zeroed(sent.labels(t)));
    const failedBy = children(WEBHOOK_TYPES, (t) => zeroed(failed.labels(t)));
    const droppedBy = children(WEBHOOK_TYPES, (t) => children(DROP_REASONS, (r) => zeroed(dropped.labels(t, r))));
    this.webhooks = {
      sent: (event: WebhookEvent) => sentBy[event.type].inc(),
      failed: (event: WebhookEvent) => failedBy[event.type].inc(),
      dropped: (event: WebhookEvent, reason: WebhookDropReason) => droppedBy[event.type][reason].inc(),
    };

    this.exposed =
      options.processMetrics === false ? this.registry : Registry.merge([sharedProcessRegistry(), this.registry]);
    this.contentType = this.exposed.contentType;
  }

  /** A socket `login` was accepted or refused. */
  login(result: LoginResult): void {
    this.logins[result].inc();
  }

  /** A push request was answered. */
  pushed(api: PushApiKind, result: PushOutcome): void {
    this.pushes[api][result].inc();
  }

  /** `count` Socket.IO emits were made for a push. */
  emitted(count = 1): void {
    this.emits.inc(count);
  }

  /** A scheduled push was given up: its deliveries failed. */
  scheduledDropped(): void {
    this.scheduledDroppedTotal.inc();
  }

  /** A page acked a kept message. */
  acked(): void {
    this.acks.inc();
  }

  /** A connection that did not read was closed. */
  slowConnectionCut(): void {
    this.slowCut.inc();
  }

  /** A push was emitted; `startedAtMs` is `performance.now()` when its request began. */
  observePushToEmit(startedAtMs: number): void {
    this.emitLatency.observe((performance.now() - startedAtMs) / 1000);
  }

  /** Reads the sources and renders every metric in Prometheus text format. */
  async render(): Promise<{ contentType: string; body: string }> {
    await this.refresh();
    return { contentType: this.contentType, body: await this.exposed.metrics() };
  }

  /**
   * Unregisters this server's metrics. Nothing to stop: prom-client 15's default metrics run
   * no timers, and they are shared by the process (see sharedProcessRegistry).
   */
  close(): void {
    this.registry.clear();
  }

  private async refresh(): Promise<void> {
    const { connections, online, store, redis } = this.sources;
    await Promise.all([
      this.read('connections', connections && (async () => connections()), (counts) => {
        for (const transport of TRANSPORTS) this.connections.labels(transport).set(counts[transport]);
      }),
      this.read('online', online, (counts) => {
        this.onlineUsers.set(counts.users);
        this.onlinePages.set(counts.pages);
      }),
      this.read('redis', redis, (reason) => this.redisUp?.set(reason === null ? 1 : 0)),
      this.read('store', store, (stats) => {
        this.storedMessages.set(stats.messages);
        this.storedBytes.set(stats.bytes);
        this.storedFileBytes.set(stats.fileBytes ?? 0);
        this.scheduled.set(stats.scheduled);
        this.scheduledBytes.set(stats.scheduledBytes);
        // The store counts since it started: mirror its totals (a lower total after a store
        // restart reads as a counter reset, which Prometheus handles).
        this.storedDropped.reset();
        this.storedDropped.inc(stats.dropped);
        this.storedExpired.reset();
        this.storedExpired.inc(stats.expired);
      }),
    ]);
  }

  private async read<T>(name: SourceName, source: (() => Promise<T>) | undefined, apply: (value: T) => void): Promise<void> {
    if (!source) return;
    let value: T;
    try {
      value = await source();
    } catch (err) {
      this.sourceErrors[name].inc();
      this.log?.error(`metrics: reading ${name} failed; its metrics keep their last values`, err);
      return;
    }
    apply(value);
  }
}
