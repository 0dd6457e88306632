// The once-a-second `update_online_count` broadcast (docs/protocol.md §3): counts are checked
// on a timer and sent to every socket only when they changed since the last broadcast.
import type { Logger } from './log.ts';
import { PeriodicTask } from './periodic.ts';
import type { OnlineCounts, Presence } from './presence.ts';

export function formatOnlineCount({ users, pages }: OnlineCounts): string {
  return `当前<b>${users}</b>人在线，共打开<b>${pages}</b>个页面`;
}

export class OnlineCountBroadcaster {
  private last: OnlineCounts = { users: 0, pages: 0 };
  private readonly task: PeriodicTask;

  /** `broadcast` sends the HTML to every socket of this node. */
  constructor(
    private readonly presence: Presence,
    private readonly broadcast: (html: string) => void,
    intervalMs: number,
    log: Logger,
  ) {
    this.task = new PeriodicTask(() => this.check(), {
      everyMs: intervalMs,
      failing: (err) => log.error('online count check failed; retrying every tick', err),
    });
  }

  private async check(): Promise<void> {
    const now = await this.presence.counts();
    if (now.users !== this.last.users || now.pages !== this.last.pages) {
      this.last = now;
      this.broadcast(formatOnlineCount(now));
    }
  }

  /** Stops the checks; resolves once a check under way has ended. */
  close(): Promise<void> {
    return this.task.close();
  }
}
