// What the admin page shows: live counts, a running push total (the page turns it into
// pushes per second), and the most recent webhook failures. Fed by the same observer calls
// as the metrics; read by the web listener at /admin/stats behind ADMIN_TOKEN.
import type { OnlineCounts } from './presence.ts';

/** Failures kept for the page; older ones are forgotten. */
const RECENT_FAILURES = 20;

export interface WebhookFailure {
  time: string;
  type: string;
  uid: string;
  error: string;
}

export interface AdminSnapshot extends OnlineCounts {
  /** Pushes accepted since start (legacy and v1). */
  pushes: number;
  webhookFailures: WebhookFailure[];
  time: string;
}

export class AdminStats {
  private pushes = 0;
  private readonly failures: WebhookFailure[] = [];

  constructor(private readonly counts: () => Promise<OnlineCounts>) {}

  pushed(): void {
    this.pushes++;
  }

  webhookFailed(event: { type: string; uid: string }, error: string): void {
    this.failures.unshift({ time: new Date().toISOString(), type: event.type, uid: event.uid, error });
    if (this.failures.length > RECENT_FAILURES) this.failures.pop();
  }

  async snapshot(): Promise<AdminSnapshot> {
    return { ...(await this.counts()), pushes: this.pushes, webhookFailures: [...this.failures], time: new Date().toISOString() };
  }
}
