// Fires scheduled pushes: a short timer asks the store for what is due. The store hands each
// due push out once, so in a cluster every node may tick and a push still fires once.
import type { Delivery } from './delivery.ts';
import type { Logger } from './log.ts';
import { StoreUnavailableError, type MessageStore } from './message-store.ts';

/** How often due pushes are looked for; a push fires at most this late (plus its own work). */
export const SCHEDULER_TICK_MS = 200;

export class Scheduler {
  private readonly timer: NodeJS.Timeout;
  private busy = false;
  /** The store failed last time: logged once when it starts and once when it ends. */
  private failing = false;

  constructor(
    private readonly store: MessageStore,
    private readonly delivery: Delivery,
    private readonly log: Logger,
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
      for (const { spec } of due) {
        await this.delivery.push(spec).catch((err: unknown) => this.log.error(`scheduled push ${spec.id} failed`, err));
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

  close(): void {
    clearInterval(this.timer);
  }
}
