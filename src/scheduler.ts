// Fires scheduled pushes: a short timer asks the store for what is due. The store hands each
// due push out once, so in a cluster every node may tick and a push still fires once. A push
// whose delivery fails goes back to the store to be tried again later, a bounded number of
// times; one given up is logged and counted, never dropped silently.
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

/** Told of each scheduled push given up (metrics). */
export interface SchedulerObserver {
  dropped(): void;
}

export class Scheduler {
  private readonly task: PeriodicTask;

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
    try {
      await this.store.schedule({ ...push, at: Date.now() + wait, attempts: failed }, true);
      this.log.warn(`scheduled push ${id}: delivery failed (${reason}); trying again in ${wait} ms`);
    } catch (again) {
      const why = again instanceof Error ? again.message : String(again);
      this.log.error(`scheduled push ${id} dropped: its delivery failed (${reason}) and it could not be put back (${why})`);
      this.observer.dropped();
    }
  }

  /** Stops the timer; resolves once the due pushes being fired are out (or put back). */
  close(): Promise<void> {
    return this.task.close();
  }
}
