// Fires scheduled pushes: a short timer asks the store for what is due. The store hands each
// due push out once, so in a cluster every node may tick and a push still fires once. A push
// whose delivery fails goes back to the store to be tried again later, a bounded number of
// times; one given up is logged and counted, never dropped silently.
import type { Delivery } from './delivery.ts';
import type { Logger } from './log.ts';
import { StoreUnavailableError, type MessageStore } from './message-store.ts';
import type { ScheduledPush } from './messages.ts';

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
  private readonly timer: NodeJS.Timeout;
  private busy = false;
  /** The store failed last time: logged once when it starts and once when it ends. */
  private failing = false;

  constructor(
    private readonly store: MessageStore,
    private readonly delivery: Delivery,
    private readonly log: Logger,
    private readonly observer: SchedulerObserver = { dropped: () => {} },
  ) {
    this.timer = setInterval(() => void this.tick(), SCHEDULER_TICK_MS);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const due = await this.store.takeDue(Date.now());
      if (this.failing) {
        this.failing = false;
        this.log.info('scheduled pushes: the store answers again');
      }
      for (const push of due) {
        // delivery emits only after every store step worked, so a failed one sent nothing
        await this.delivery.push(push.spec).catch((err: unknown) => this.putBack(push, err));
      }
    } catch (err) {
      // due pushes stay in the store and fire when it answers again
      if (!this.failing) {
        if (err instanceof StoreUnavailableError) {
          this.log.warn(`scheduled pushes wait: ${err.message}; retrying every ${SCHEDULER_TICK_MS} ms`);
        } else {
          this.log.error('scheduled pushes: cannot read the store; retrying', err);
        }
      }
      this.failing = true;
    } finally {
      this.busy = false;
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

  close(): void {
    clearInterval(this.timer);
  }
}
