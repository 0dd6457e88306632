// The MessageStore in Redis, shared by every node of a cluster: kept messages, idempotency
// keys and scheduled pushes, with the semantics of MemoryMessageStore. Each change that
// touches several keys is one Lua script, so every node sees it whole and two nodes never
// claim the same due push at once.
import { randomUUID } from 'node:crypto';
import type { Logger } from '../log.ts';
import { PeriodicTask } from '../periodic.ts';
import { idempotencyKeyBytes, type AckedMessage, type ClaimedPush, type PendingPage, type ClaimResult, type MessageStore, type ScheduledCursor, type ScheduledPage, type ScheduleOutcome, type ExpiredListener, type StoreLimits, type StoreStats } from '../message-store.ts';
import type { KeptAnswer, ScheduledPush, StoredMessage } from '../messages.ts';
import type { RedisCommands } from './redis-cluster-client.ts';
import { ACK, ACK_THROUGH, ADD, CANCEL, CLAIM, CLAIM_DUE, FIRED, PENDING_PAGE, RELEASE, SCHEDULE, SCHEDULED, SETTLE, SWEEP } from './redis-store-scripts.ts';

export interface RedisStoreOptions {
  /**
   * Put before every key, so several stores (or test runs) can share one Redis.
   * @default 'push:'
   */
  prefix?: string;
  /** Told of each message that expired unacked (the sweep script hands each out once). */
  onExpired?: ExpiredListener;
  /**
   * Run after each write whose answer a client relies on (a stored push, a push id, a
   * scheduled push): on a Redis Cluster, a WAIT for a replica (replicaConfirmation). Rejects
   * when the write may not survive a failover.
   */
  confirm?: () => Promise<void>;
}

/** How often expired messages are swept, ms (as MemoryMessageStore). */
const SWEEP_MS = 1000;
/** Expired entries removed by one sweep script, so one sweep never blocks Redis for long. */
const SWEEP_BATCH = 1000;

function toStrings(reply: unknown): string[] {
  if (!Array.isArray(reply)) throw new Error(`unexpected reply from Redis: ${String(reply)}`);
  // a null would be a hash field missing for a sorted-set member: the scripts keep them
  // together, so none is expected; skipped rather than parsed
  return reply.filter((item): item is string => typeof item === 'string');
}

function toNumber(reply: unknown): number {
  const n = Number(reply);
  if (reply === null || !Number.isFinite(n)) throw new Error(`unexpected reply from Redis: ${String(reply)}`);
  return n;
}

/** What idempotencyKeyBytes() adds to twice the id's length; the scripts use the same formula. */
const keyOverhead = idempotencyKeyBytes('');

/** A ms time as Redis wants it: an integer. */
function ms(time: number): string {
  return String(Math.ceil(time));
}

export class RedisMessageStore implements MessageStore {
  private readonly prefix: string;
  /** KEYS[1] of every script: a key of the store's slot, for a cluster's routing. */
  private readonly routing: string;
  /** Its close() waits for a sweep under way, so none runs on a client the caller closes next. */
  private readonly sweeper: PeriodicTask;
  private readonly onExpired: ExpiredListener;
  /**
   * Pairs this node's scripts dropped (bounds) and swept (expired): each removal is counted by
   * the one node that made it, so these sum over nodes to the cluster's, where copies of a
   * shared total would be counted once per node.
   */
  private dropped = 0;
  private expired = 0;
  private readonly confirm: () => Promise<void>;
  /** A sweep that pendingCount() started and others may share. */
  private sweeping: Promise<number> | null = null;

  /** The client is the caller's: close() leaves it open. */
  constructor(
    private readonly client: RedisCommands,
    private readonly limits: StoreLimits,
    log: Logger,
    options: RedisStoreOptions = {},
  ) {
    this.prefix = options.prefix ?? 'push:';
    this.routing = `${this.prefix}counters`;
    this.onExpired = options.onExpired ?? (() => {});
    this.confirm = options.confirm ?? (() => Promise.resolve());
    // logged once per failure spell, not once a second while Redis is away
    this.sweeper = new PeriodicTask(() => this.sweep(Date.now()), {
      everyMs: SWEEP_MS,
      failing: (err) =>
        log.warn(`message store: sweeping expired messages failed (${describe(err)}); retrying every ${SWEEP_MS} ms`),
      recovered: () => log.info('message store: sweeping expired messages works again'),
    });
  }

  async add(uids: readonly string[], message: StoredMessage, bytes: number): Promise<number> {
    if (uids.length === 0) return 0;
    const { maxPendingPerUid, maxBytes } = this.limits;
    const reply = await ADD.run(this.client, this.routing, [
      this.prefix,
      JSON.stringify(message),
      message.id,
      ms(message.expiresAt),
      String(Math.ceil(bytes)),
      String(maxPendingPerUid),
      String(maxBytes),
      ...uids,
    ]);
    if (!Array.isArray(reply)) throw new Error(`unexpected reply from Redis: ${String(reply)}`);
    this.dropped += toNumber(reply[1]);
    await this.confirm();
    return toNumber(reply[0]);
  }

  async pendingCount(uid: string): Promise<number> {
    // what expired is swept first, so the count is of unexpired ones
    await this.sweepNow();
    return this.client.zCard(`${this.prefix}q:${uid}`);
  }

  async pendingPage(uid: string, after: number, limit: number, maxBytes: number): Promise<PendingPage> {
    const args = [this.prefix, uid, String(after), String(limit), String(maxBytes), String(Date.now())];
    const reply = await PENDING_PAGE.run(this.client, this.routing, args);
    if (!Array.isArray(reply)) throw new Error(`unexpected reply from Redis: ${String(reply)}`);
    const [next, nextBytes, ...items] = reply.map(String);
    const page: PendingPage = { entries: [], next: next ? Number(next) : null, ...(nextBytes ? { nextBytes: Number(nextBytes) } : {}) };
    if (items.length === 0) return page;
    const ids = items.filter((_, i) => i % 2 === 0);
    // acked or dropped since the script: missing, skipped
    const bodies = await this.client.hmGet(`${this.prefix}m:${uid}`, ids);
    bodies.forEach((json, i) => {
      if (typeof json === 'string') page.entries.push({ message: JSON.parse(json) as StoredMessage, bytes: Number(items[2 * i + 1]) });
    });
    return page;
  }

  async cursorOf(uid: string, id: string): Promise<number | null> {
    return this.client.zScore(`${this.prefix}q:${uid}`, id);
  }

  async ackThrough(uid: string, through: number, limit: number): Promise<AckedMessage[]> {
    const reply = toStrings(await ACK_THROUGH.run(this.client, this.routing, [this.prefix, uid, String(through), String(limit)]));
    const acked: AckedMessage[] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) acked.push({ id: reply[i]!, expiresAt: Number(reply[i + 1]) });
    return acked;
  }

  async ack(uid: string, id: string): Promise<boolean> {
    return toNumber(await ACK.run(this.client, this.routing, [this.prefix, uid, id])) === 1;
  }

  async claim(id: string, leaseUntil: number): Promise<ClaimResult> {
    // Redis drops an expired key itself (PXAT); the script gives back its bytes the next time
    // a claim runs, so a key whose time is already past is free again at once, as in memory.
    const reply = await CLAIM.run(this.client, this.routing, [
      this.prefix,
      String(keyOverhead),
      id,
      String(Math.max(1, Math.ceil(leaseUntil))),
      String(Date.now()),
      String(this.limits.maxIdempotencyBytes),
    ]);
    if (!Array.isArray(reply)) throw new Error(`unexpected reply from Redis: ${String(reply)}`);
    const [status, held] = reply as [unknown, unknown];
    if (Number(status) === 1) {
      await this.confirm();
      return { first: true };
    }
    if (Number(status) === 2) return { first: false, full: true };
    return { first: false, result: held === '' || typeof held !== 'string' ? null : (JSON.parse(held) as KeptAnswer) };
  }

  async settle(id: string, result: KeptAnswer, until: number): Promise<void> {
    await SETTLE.run(this.client, this.routing, [this.prefix, id, JSON.stringify(result), String(Math.max(1, Math.ceil(until)))]);
    await this.confirm();
  }

  async release(id: string): Promise<boolean> {
    return toNumber(await RELEASE.run(this.client, this.routing, [this.prefix, String(keyOverhead), id])) === 1;
  }

  async schedule(push: ScheduledPush, putBack = false): Promise<ScheduleOutcome> {
    const { maxScheduled, maxScheduledBytes } = this.limits;
    const args = [this.prefix, push.spec.id, ms(push.at), JSON.stringify(push), String(maxScheduled), String(maxScheduledBytes), putBack ? '1' : '0'];
    const reply = await SCHEDULE.run(this.client, this.routing, args);
    if (reply !== 'scheduled' && reply !== 'count' && reply !== 'bytes') throw new Error(`unexpected reply from Redis: ${String(reply)}`);
    if (reply === 'scheduled') await this.confirm();
    return reply;
  }

  async cancel(id: string): Promise<boolean> {
    const cancelled = toNumber(await CANCEL.run(this.client, this.routing, [this.prefix, id])) === 1;
    if (cancelled) await this.confirm();
    return cancelled;
  }

  async scheduled(after: ScheduledCursor | null, limit: number, maxBytes: number): Promise<ScheduledPage> {
    const args = [this.prefix, after === null ? '' : ms(after.at), after?.id ?? '', String(limit), String(maxBytes)];
    const [nextAt, nextId, ...items] = toStrings(await SCHEDULED.run(this.client, this.routing, args));
    const scheduled: ScheduledPush[] = [];
    // the due time is the sorted set's: a claimed push's lease end, not its JSON's at
    for (let i = 0; i + 1 < items.length; i += 2) scheduled.push({ ...(JSON.parse(items[i + 1]!) as ScheduledPush), at: Number(items[i]) });
    return {
      scheduled,
      // the cursor holds the sorted set's score (whole ms), which the script compares
      next: nextAt ? { at: Number(nextAt), id: nextId ?? '' } : null,
    };
  }

  async claimDue(now: number, leaseUntil: number, limit: number): Promise<ClaimedPush[]> {
    const claim = randomUUID();
    const reply = await CLAIM_DUE.run(this.client, this.routing, [this.prefix, String(Math.floor(now)), ms(leaseUntil), String(limit), claim]);
    if (!Array.isArray(reply)) throw new Error(`unexpected reply from Redis: ${String(reply)}`);
    const claimed: ClaimedPush[] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) {
      claimed.push({ push: JSON.parse(String(reply[i + 1])) as ScheduledPush, claim, claims: toNumber(reply[i]) });
    }
    return claimed;
  }

  async fired(claimed: readonly ClaimedPush[]): Promise<number> {
    if (claimed.length === 0) return 0;
    const args = [this.prefix, ...claimed.flatMap(({ push, claim }) => [push.spec.id, claim])];
    return toNumber(await FIRED.run(this.client, this.routing, args));
  }

  async stats(): Promise<StoreStats> {
    const p = this.prefix;
    const [messages, counters, scheduled] = await this.client
      .multi()
      .zCard(p + 'order')
      .hmGet(p + 'counters', ['bytes', 'scheduledBytes'])
      .zCard(p + 'scheduled')
      .exec();
    const [bytes, scheduledBytes] = Array.isArray(counters) ? counters : [];
    return {
      messages: Number(messages),
      bytes: Number(bytes ?? 0),
      dropped: this.dropped,
      expired: this.expired,
      scheduled: Number(scheduled),
      scheduledBytes: Number(scheduledBytes ?? 0),
    };
  }

  close(): Promise<void> {
    return this.sweeper.close();
  }

  /** One sweep at a time for the callers that need one now: concurrent logins share it. */
  private sweepNow(): Promise<number> {
    this.sweeping ??= this.sweep(Date.now()).finally(() => (this.sweeping = null));
    return this.sweeping;
  }

  /**
   * Removes the pairs expired by `now` and counts them; any node may run it at any time
   * (each pair is removed once). Resolves how many it removed.
   */
  async sweep(now: number): Promise<number> {
    let removed = 0;
    for (;;) {
      const reply = await SWEEP.run(this.client, this.routing, [this.prefix, String(Math.floor(now)), String(SWEEP_BATCH)]);
      if (!Array.isArray(reply)) throw new Error(`unexpected reply from Redis: ${String(reply)}`);
      const [count, ...pairs] = reply.map(String);
      const n = Number(count);
      for (let i = 0; i + 1 < pairs.length; i += 2) {
        if (pairs[i + 1] === '') continue;
        this.onExpired(pairs[i]!, JSON.parse(pairs[i + 1]!) as StoredMessage);
      }
      removed += n;
      this.expired += n;
      if (n < SWEEP_BATCH) return removed;
    }
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
