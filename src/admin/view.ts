// What the admin page asks, answered cluster-wide: this node's figures (NodeStats) and, in a
// cluster, every other node's (AdminPeers, over the Redis adapter's serverSideEmit), merged
// with the presence and the store, which are cluster-wide already.
import type { StoredMessage } from '../messages.ts';
import type { OnlineCounts } from '../presence.ts';
import type { StoreStats } from '../message-store.ts';
import { mergeHistories, type HistoryJson } from './history.ts';
import type { NodeStats, NodeSummary, WebhookFailure, WebhookRecord } from './node-stats.ts';

export type Transports = { websocket: number; polling: number; sse: number };

/** What one node knows of a uid: its pages there by transport, its recent webhook events there. */
export interface NodeUid {
  transports: Transports;
  webhookEvents: WebhookRecord[];
}

/** The other nodes of a cluster; `complete` is false when one did not answer in time. */
export interface AdminPeers {
  summaries(): Promise<{ replies: NodeSummary[]; complete: boolean }>;
  histories(): Promise<{ replies: HistoryJson[]; complete: boolean }>;
  uid(uid: string): Promise<{ replies: NodeUid[]; complete: boolean }>;
}

/** Which nodes a figure covers: this one alone, or the cluster (and whether all answered). */
export interface Coverage {
  scope: 'node' | 'cluster';
  /** Nodes whose figures are in (this one included). */
  nodes: number;
  /** False when a node did not answer within the adapter's requestsTimeout (5 s). */
  complete: boolean;
}

export interface AdminSnapshot extends OnlineCounts, Coverage {
  /** Pushes accepted since each node started (legacy and v1), summed. */
  pushes: number;
  pushesPerSecond: number;
  /** Stored messages waiting for their uids, and their bytes (null: the store did not answer). */
  backlog: { messages: number; bytes: number } | null;
  webhookFailures: WebhookFailure[];
  time: string;
}

/** Stored messages a lookup lists at most (the count covers all of them). */
export const LOOKUP_MESSAGES = 20;
/** Characters of a stored message's data (as JSON) a lookup shows. */
const PREVIEW_CHARS = 200;
/** Webhook events a lookup lists at most. */
const LOOKUP_WEBHOOK_EVENTS = 50;
const FAILURES_SHOWN = 20;

export interface UidLookup extends Coverage {
  uid: string;
  online: boolean;
  pages: number;
  transports: Transports;
  stored: { count: number; messages: { id: string; event: string; ts: string; expiresAt: string; preview: string }[] } | null;
  webhookEvents: WebhookRecord[];
}

export interface AdminSources {
  counts(): Promise<OnlineCounts>;
  pagesOf(uid: string): Promise<number>;
  /** How many messages are stored for `uid`, and the oldest `limit` of them (none beyond those read). */
  stored(uid: string, limit: number): Promise<{ count: number; messages: StoredMessage[] }>;
  storeStats(): Promise<StoreStats>;
  /** This node's pages of `uid` by transport. */
  localTransports(uid: string): Transports;
}

export class AdminView {
  constructor(
    private readonly stats: NodeStats,
    private readonly sources: AdminSources,
    /** Null on one node. */
    private readonly peers: AdminPeers | null,
  ) {}

  /** Takes this node's sample of the cluster-wide gauges (on ADMIN_SAMPLE_MS). */
  async sample(): Promise<void> {
    const [counts, store] = await Promise.all([this.sources.counts().catch(() => null), this.sources.storeStats().catch(() => null)]);
    this.stats.sample({ users: counts?.users ?? null, pages: counts?.pages ?? null, backlog: store?.messages ?? null });
  }

  async snapshot(): Promise<AdminSnapshot> {
    const [counts, store, others] = await Promise.all([
      this.sources.counts(),
      this.sources.storeStats().catch(() => null),
      this.peers?.summaries() ?? { replies: [], complete: true },
    ]);
    const all = [this.stats.summary(), ...others.replies];
    return {
      ...counts,
      pushes: all.reduce((sum, s) => sum + s.pushes, 0),
      pushesPerSecond: all.reduce((sum, s) => sum + s.pushesPerSecond, 0),
      backlog: store ? { messages: store.messages, bytes: store.bytes } : null,
      webhookFailures: all
        .flatMap((s) => s.webhookFailures)
        .sort((a, b) => b.time.localeCompare(a.time))
        .slice(0, FAILURES_SHOWN),
      ...this.coverage(all.length, others.complete),
      time: new Date().toISOString(),
    };
  }

  async history(): Promise<HistoryJson & Coverage> {
    const others = (await this.peers?.histories()) ?? { replies: [], complete: true };
    const own = this.stats.history.toJSON();
    return { ...mergeHistories([own, ...others.replies], own.sampleMs), ...this.coverage(others.replies.length + 1, others.complete) };
  }

  async lookup(uid: string): Promise<UidLookup> {
    const [pages, stored, others] = await Promise.all([
      this.sources.pagesOf(uid),
      this.sources.stored(uid, LOOKUP_MESSAGES).catch(() => null),
      this.peers?.uid(uid) ?? { replies: [], complete: true },
    ]);
    const nodes: NodeUid[] = [{ transports: this.sources.localTransports(uid), webhookEvents: this.stats.webhookEventsOf(uid) }, ...others.replies];
    const transports: Transports = { websocket: 0, polling: 0, sse: 0 };
    for (const n of nodes) for (const k of ['websocket', 'polling', 'sse'] as const) transports[k] += n.transports[k];
    return {
      uid,
      online: pages > 0,
      pages,
      transports,
      stored: stored && {
        count: stored.count,
        messages: stored.messages.map((m) => ({
          id: m.id,
          event: m.event,
          ts: new Date(m.ts).toISOString(),
          expiresAt: new Date(m.expiresAt).toISOString(),
          preview: (JSON.stringify(m.data) ?? '').slice(0, PREVIEW_CHARS),
        })),
      },
      webhookEvents: nodes
        .flatMap((n) => n.webhookEvents)
        .sort((a, b) => b.time.localeCompare(a.time))
        .slice(0, LOOKUP_WEBHOOK_EVENTS),
      ...this.coverage(nodes.length, others.complete),
    };
  }

  private coverage(nodes: number, complete: boolean): Coverage {
    return { scope: this.peers ? 'cluster' : 'node', nodes, complete };
  }
}
