// The presence policy of the webhooks: a uid's first page anywhere becomes user.online, and
// its last page gone for WEBHOOK_GRACE_MS becomes user.offline, so a page refresh sends
// nothing. Which uids were announced is kept in an AnnouncedState: in memory on one node,
// in Redis (cluster/components.ts) when the nodes share it.
import type { Logger } from '../log.ts';
import type { WebhookSender } from './sender.ts';

/**
 * Which uids the receivers were last told are online. In a cluster every node shares it, so
 * a uid that moves from one node to another is announced once; a Redis implementation goes
 * behind this interface.
 */
export interface AnnouncedState {
  /** Records `uid` as announced online; true when it was not already (so announce it). */
  markOnline(uid: string): Promise<boolean>;
  /** Records `uid` as announced offline; true when it was announced online (so announce it). */
  markOffline(uid: string): Promise<boolean>;
}

/** The single-node default: the set of uids announced online, as big as the online users. */
export class MemoryAnnouncedState implements AnnouncedState {
  private readonly online = new Set<string>();

  async markOnline(uid: string): Promise<boolean> {
    if (this.online.has(uid)) return false;
    this.online.add(uid);
    return true;
  }

  async markOffline(uid: string): Promise<boolean> {
    return this.online.delete(uid);
  }
}

export interface PresenceWebhooksOptions {
  /**
   * How long a uid must stay without pages before user.offline is sent. A page refresh or a
   * reconnect within it sends neither offline nor online.
   * @default 5000
   */
  graceMs?: number;
}

/**
 * Turns page transitions into user.online / user.offline. The server calls online(uid) when
 * presence says a uid got its first page (cluster-wide) and offline(uid) when it lost its
 * last one. offline waits graceMs, then sends user.offline only when the uid is still not
 * online anywhere (`isOnline`); `announced` makes online follow only an announced offline.
 *
 * Steps for one uid run one after another, so a slow `isOnline` (Redis) cannot let an online
 * overtake the offline before it. Across nodes the announced state decides: if a uid comes
 * back on another node while this one is announcing its offline, the offline is followed by
 * an online (a re-check after announcing), so the receiver's last word is right; events sent
 * by different nodes may arrive out of order, which `time` settles.
 */
export class PresenceWebhooks {
  private readonly graceMs: number;
  private readonly graceTimers = new Map<string, NodeJS.Timeout>();
  private readonly steps = new Map<string, Promise<void>>();
  private closed = false;

  constructor(
    private readonly sender: Pick<WebhookSender, 'send'>,
    private readonly isOnline: (uid: string) => Promise<boolean>,
    private readonly announced: AnnouncedState,
    options: PresenceWebhooksOptions,
    private readonly log: Logger,
  ) {
    this.graceMs = options.graceMs ?? 5000;
  }

  /** Uids in their grace period: offline, not yet announced. */
  get inGrace(): number {
    return this.graceTimers.size;
  }

  /** `uid` got its first page. Within a pending grace period this cancels the offline. */
  online(uid: string): void {
    if (this.closed) return;
    const timer = this.graceTimers.get(uid);
    if (timer) {
      // Back before the receiver was told it left: from its point of view it never went away.
      clearTimeout(timer);
      this.graceTimers.delete(uid);
      return;
    }
    this.step(uid, () => this.announceOnline(uid));
  }

  /** `uid` lost its last page; user.offline follows after the grace period unless it returns. */
  offline(uid: string): void {
    if (this.closed) return;
    const previous = this.graceTimers.get(uid);
    if (previous) clearTimeout(previous);
    this.graceTimers.set(
      uid,
      setTimeout(() => {
        this.graceTimers.delete(uid);
        this.step(uid, () => this.graceOver(uid));
      }, this.graceMs),
    );
  }

  /** Clears every grace timer; offlines still in their grace period are not sent. */
  close(): void {
    this.closed = true;
    for (const timer of this.graceTimers.values()) clearTimeout(timer);
    this.graceTimers.clear();
  }

  private async announceOnline(uid: string): Promise<void> {
    if (await this.announced.markOnline(uid)) this.emit('user.online', uid);
  }

  private async graceOver(uid: string): Promise<void> {
    if (await this.isOnline(uid)) return; // back on some node: nothing happened
    if (this.closed || !(await this.announced.markOffline(uid))) return;
    this.emit('user.offline', uid);
    // It may have come back elsewhere between the check and the mark, and that node saw it
    // still announced online: tell the receiver it is back.
    if (await this.isOnline(uid)) await this.announceOnline(uid);
  }

  private emit(type: 'user.online' | 'user.offline', uid: string): void {
    if (!this.closed) this.sender.send({ type, uid });
  }

  /** Runs `fn` after every earlier step for `uid`; a failure is logged, never thrown. */
  private step(uid: string, fn: () => Promise<void>): void {
    const previous = this.steps.get(uid) ?? Promise.resolve();
    const next = previous
      .then(() => (this.closed ? undefined : fn()))
      // After close the presence backend may be gone too: that failure is expected, not logged.
      .catch((err: unknown) => {
        if (!this.closed) this.log.error('presence webhook step failed', err);
      });
    this.steps.set(uid, next);
    void next.finally(() => {
      if (this.steps.get(uid) === next) this.steps.delete(uid);
    });
  }
}
