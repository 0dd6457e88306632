// Fires scheduled pushes, claim then fire: a short timer claims what is due from the store
// (each push stays there under a lease), makes each push, then confirms the ones made
// (fired()), which removes them. The store hands a push to one claimer per lease, so in a
// cluster every node may tick; a node that dies (or loses the store) before confirming leaves
// its pushes to be claimed again when the lease ends: made twice at worst, never lost. A
// re-made push stores nothing new for a uid that still keeps it (the stores skip a (uid, id)
// they hold) and goes out live with the same id (docs/protocol.md, "Scheduled pushes").
// A push whose delivery fails goes back to the store to be tried again later, a bounded number
// of times; when the store is away that put-back fails too, and the node holds the push (a
// bounded number) until the store answers. One given up (its deliveries failed, or it was
// claimed too often without being confirmed) is logged and counted, never dropped silently.
import type { Delivery } from './delivery.ts';
import type { Logger } from './log.ts';
import { StoreUnavailableError, type MessageStore } from './message-store.ts';
import type { ClaimedPush } from './message-store.ts';
import type { ScheduledPush } from './messages.ts';
import { PeriodicTask } from './periodic.ts';

/** How often due pushes are looked for; a push fires at most this late (plus its own work). */
export const SCHEDULER_TICK_MS = 200;

/**
 * Deliveries tried per scheduled push. With the waits of retryDelay() the last is about 4
 * minutes after the first: a Redis restart or failover fits, a push does not linger for hours.
 */
export const SCHEDULED_ATTEMPTS = 8;

/** The wait before trying a push again after its `failed`-th failed delivery: 1 s doubling, at most 60 s. */
export function retryDelay(failed: number): number {
  return Math.min(1000 * 2 ** (failed - 1), 60_000);
}

/**
 * Due pushes claimed at once, and how long a claim holds them. A claimed batch is made one push
 * after another; a push costs one or two store writes: about 2 ms on the embedded store, which
 * fsyncs each (1.7 ms measured per add), well under 1 ms on a local Redis. So a batch of 100 is
 * made in about 0.2 s, and the 30 s lease outlasts it 100 times over: a slow disk or Redis
 * (REDIS_COMMAND_TIMEOUT_MS, 2 s by default, per command) still fits. The lease is also how
 * long the pushes of a node that died wait before another node claims them (the embedded
 * store makes a dead process's claims due at once when it opens). A node makes a push only in
 * the first half of its lease (CLAIM_FIRE_MS), so one that stalls leaves the rest of its batch
 * to be claimed again instead of making them while another node does.
 */
export const CLAIM_BATCH = 100;
export const CLAIM_LEASE_MS = 30_000;
const CLAIM_FIRE_MS = CLAIM_LEASE_MS / 2;

/**
 * Claims a push may take without one being confirmed or put back (its claimers died, e.g. a
 * push whose making crashes the process) before it is given up, logged and counted.
 */
export const MAX_CLAIMS = SCHEDULED_ATTEMPTS;

/**
 * Pushes made but not yet confirmed (fired() failed: the store is away), kept to confirm at
 * the next tick. Past it the oldest are forgotten: they are made again when their lease ends.
 */
export const UNCONFIRMED_PUSHES = 10 * CLAIM_BATCH;

/**
 * Pushes, and their bytes as JSON, a node holds itself when putting them back failed too (the
 * store is away: the delivery failed for the same reason). Past either bound a push is not
 * held: it stays in the store under its claim and is tried again when the lease ends.
 */
export const HELD_PUSHES = 1000;
export const HELD_BYTES = 16 * 1024 * 1024;

/** Told of each scheduled push given up (metrics). */
export interface SchedulerObserver {
  dropped(): void;
}

export class Scheduler {
  private readonly task: PeriodicTask;
  /** Pushes whose put-back failed, by id, with their JSON bytes: put back on the next ticks. */
  private readonly held = new Map<string, { push: ScheduledPush; bytes: number }>();
  private heldBytes = 0;
  /** Claimed pushes made (or given up) whose fired() has not worked yet, oldest first. */
  private unconfirmed: ClaimedPush[] = [];

  constructor(
    private readonly store: MessageStore,
    private readonly delivery: Delivery,
    private readonly log: Logger,
    private readonly observer: SchedulerObserver = { dropped: () => {} },
  ) {
    // due pushes stay in the store while it fails, and fire when it answers again
    this.task = new PeriodicTask(() => this.fireDue(), {
      everyMs: SCHEDULER_TICK_MS,
      failing: (err) => {
        if (err instanceof StoreUnavailableError) {
          log.warn(`scheduled pushes wait: ${err.message}; retrying every ${SCHEDULER_TICK_MS} ms`);
        } else {
          log.error('scheduled pushes: cannot read the store; retrying', err);
        }
      },
      recovered: () => log.info('scheduled pushes: the store answers again'),
    });
  }

  private async fireDue(): Promise<void> {
    await this.putBackHeld();
    // a confirmation that fails (the store is away) fails the tick: nothing more is claimed
    await this.confirm();
    for (;;) {
      const claimedAt = Date.now();
      const claimed = await this.store.claimDue(claimedAt, claimedAt + CLAIM_LEASE_MS, CLAIM_BATCH);
      let slow = false;
      for (const [i, c] of claimed.entries()) {
        if (Date.now() - claimedAt > CLAIM_FIRE_MS) {
          const left = claimed.length - i;
          this.log.warn(`scheduled pushes: a claimed batch is slow to make; ${left} left to be claimed again in ${CLAIM_LEASE_MS - CLAIM_FIRE_MS} ms`);
          slow = true;
          break;
        }
        await this.fire(c);
      }
      await this.confirm();
      if (slow || claimed.length < CLAIM_BATCH) return;
    }
  }

  /** Makes one claimed push; one made (or given up) waits for confirm(), a failed one is put back. */
  private async fire(c: ClaimedPush): Promise<void> {
    const id = c.push.spec.id;
    if (c.claims > MAX_CLAIMS) {
      this.log.error(`scheduled push ${id} dropped: claimed ${c.claims} times and never confirmed made (the nodes making it died or lost the store)`);
      this.observer.dropped();
      this.unconfirmed.push(c); // removed from the store by the next confirmation
      return;
    }
    if (c.claims > 1) this.log.warn(`scheduled push ${id}: claimed again (claim ${c.claims}); it may have been made already, it is made again with the same id`);
    try {
      // delivery emits only after every store step worked, so a failed one sent nothing
      await this.delivery.push(c.push.spec);
    } catch (err) {
      await this.putBack(c, err); // replaces the claimed entry
      return;
    }
    this.unconfirmed.push(c);
    if (this.unconfirmed.length > UNCONFIRMED_PUSHES) {
      const forgotten = this.unconfirmed.splice(0, this.unconfirmed.length - UNCONFIRMED_PUSHES);
      this.log.warn(`scheduled pushes: ${forgotten.length} made but not confirmed to the store; they are made again when their lease ends`);
    }
  }

  /** Tells the store which claimed pushes were made; kept for the next try when it fails. */
  private async confirm(): Promise<void> {
    if (this.unconfirmed.length === 0) return;
    await this.store.fired(this.unconfirmed);
    this.unconfirmed = [];
  }

  /**
   * Puts a push whose delivery failed back in the store, replacing its claim. When that fails
   * too, the claimed push is still in the store and would be tried again when its lease ends;
   * it is held here to be put back (with its attempts counted) as soon as the store answers.
   */
  private async putBack(claimed: ClaimedPush, err: unknown): Promise<void> {
    const push = claimed.push;
    const failed = (push.attempts ?? 0) + 1;
    const id = push.spec.id;
    const reason = err instanceof Error ? err.message : String(err);
    if (failed >= SCHEDULED_ATTEMPTS) {
      this.log.error(`scheduled push ${id} dropped: its delivery failed ${failed} times, last: ${reason}`);
      this.observer.dropped();
      this.unconfirmed.push(claimed); // removed from the store by the next confirmation
      return;
    }
    const wait = retryDelay(failed);
    const again: ScheduledPush = { ...push, at: Date.now() + wait, attempts: failed };
    try {
      await this.store.schedule(again, true);
      this.log.warn(`scheduled push ${id}: delivery failed (${reason}); trying again in ${wait} ms`);
    } catch (putBackFailure) {
      const why = putBackFailure instanceof Error ? putBackFailure.message : String(putBackFailure);
      const bytes = Buffer.byteLength(JSON.stringify(again));
      if (this.held.size >= HELD_PUSHES || this.heldBytes + bytes > HELD_BYTES) {
        this.log.warn(
          `scheduled push ${id}: delivery failed (${reason}) and it could not be put back (${why}); ` +
            `${this.held.size} pushes (${this.heldBytes} bytes) wait to be put back already: it stays in the store ` +
            `under its claim and is tried again when the lease ends`,
        );
        return;
      }
      this.held.set(id, { push: again, bytes });
      this.heldBytes += bytes;
      this.log.warn(`scheduled push ${id}: delivery failed (${reason}) and it could not be put back (${why}); held here, put back when the store answers`);
    }
  }

  /** Puts the held pushes back, in order, until the store fails (it is still away). */
  private async putBackHeld(): Promise<void> {
    for (const [id, { push, bytes }] of this.held) {
      try {
        await this.store.schedule(push, true);
      } catch {
        return; // the store is away still: tried again at the next tick
      }
      this.held.delete(id);
      this.heldBytes -= bytes;
      this.log.info(`scheduled push ${id}: put back in the store; it fires at ${new Date(push.at).toISOString()} or after`);
    }
  }

  /**
   * Stops the timer; resolves once the due pushes being fired are out (or put back) and
   * confirmed. What could not be put back or confirmed stays in the store under its claim and is
   * made again when the lease ends: said, not silent.
   */
  async close(): Promise<void> {
    await this.task.close();
    // what cannot be confirmed now is made again when its lease ends: said, not silent
    await this.confirm().catch((err: unknown) => {
      const why = err instanceof Error ? err.message : String(err);
      this.log.warn(`scheduled pushes: ${this.unconfirmed.length} made but not confirmed at shutdown (${why}); they are made again when their lease ends`);
    });
    this.unconfirmed = [];
    await this.putBackHeld();
    for (const id of this.held.keys()) {
      this.log.warn(`scheduled push ${id}: not put back at shutdown (the store is away); it stays in the store under its claim and is tried again when the lease ends`);
    }
    this.held.clear();
    this.heldBytes = 0;
  }
}
