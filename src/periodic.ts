// Background work on a timer (online count, scheduler, Redis sweep and heartbeat): one run at
// a time, and a failing dependency is logged once when it starts failing and once when it
// works again, not once per period while it is away.

export interface PeriodicTaskOptions {
  everyMs: number;
  /** The first run of a failure spell failed with `err`; later failures in the spell are not told. */
  failing(err: unknown): void;
  /** A run worked after a failure spell. */
  recovered?(): void;
}

export class PeriodicTask {
  private readonly timer: NodeJS.Timeout;
  private running: Promise<void> | null = null;
  private failed = false;
  private closed: Promise<void> | null = null;

  /**
   * Runs `work` every `everyMs`; a period that comes while a run is under way is skipped, so a
   * slow dependency never piles runs up. The timer is not unref'd: close() must be called.
   */
  constructor(
    private readonly work: () => unknown,
    private readonly options: PeriodicTaskOptions,
  ) {
    this.timer = setInterval(() => void this.run(), options.everyMs);
  }

  /** Runs now, or joins the run under way; after close() does nothing. Never rejects. */
  run(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.running ??= this.once().finally(() => (this.running = null));
    return this.running;
  }

  /** Stops the timer and waits for a run under way; idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      clearInterval(this.timer);
      await this.running;
    })();
    return this.closed;
  }

  private async once(): Promise<void> {
    try {
      await this.work();
      if (this.failed) this.options.recovered?.();
      this.failed = false;
    } catch (err) {
      if (!this.failed) this.options.failing(err);
      this.failed = true;
    }
  }
}
