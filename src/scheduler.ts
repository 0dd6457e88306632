// Fires scheduled pushes: a short timer asks the store for what is due. The store hands each
// due push out once, so in a cluster every node may tick and a push still fires once. A push
// whose delivery fails goes back to the store to be tried again later, a bounded number of
// times; when the store is away that put-back fails too, and the node holds the push (a
// bounded number) until the store answers. One given up is logged and counted, never
// dropped silently.
import type { Delivery } from './delivery.ts';
import type { Logger } from './log.ts';
import { StoreUnavailableError, type MessageStore } from './message-store.ts';
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
 * Pushes, and their bytes as JSON, a node holds itself when putting them back failed too (the
 * store is away: the delivery failed for the same reason). Past either bound the push is
 * given up, logged and counted.
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
    const due = await this.store.takeDue(Date.now());
    for (const push of due) {
      // delivery emits only after every store step worked, so a failed one sent nothing
      await this.delivery.push(push.spec).catch((err: unknown) => this.putBack(push, err));
    }
  }

  private async putBack(push: ScheduledPush, err: unknown): Promise<void> {
    const failed = (push.attempts ?? 0) + 1;
    const id = push.spec.id;
    const reason = err instanceof Error ? err.message : String(err);
    if (failed >= SCHEDULED_ATTEMPTS) {
      this.log.error(`scheduled push ${id} dropped: its delivery failed ${failed} times, last: ${reason}`);
      this.observer.dropped();
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
        this.log.error(
          `scheduled push ${id} dropped: its delivery failed (${reason}) and it could not be put back (${why}); ` +
            `${this.held.size} pushes (${this.heldBytes} bytes) wait to be put back already`,
        );
        this.observer.dropped();
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
   * Stops the timer; resolves once the due pushes being fired are out (or put back). What could
   * not be put back goes with this process: said and counted, not dropped silently.
   */
  async close(): Promise<void> {
    await this.task.close();
    for (const id of this.held.keys()) {
      this.log.error(`scheduled push ${id} dropped at shutdown: it could not be put back in the store`);
      this.observer.dropped();
    }
    this.held.clear();
    this.heldBytes = 0;
  }
}
