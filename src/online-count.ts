// The once-a-second `update_online_count` broadcast (docs/protocol.md §3): counts are checked
// on a timer and sent to every socket only when they changed since the last broadcast.
import type { Logger } from './log.ts';
import type { OnlineCounts, Presence } from './presence.ts';

export function formatOnlineCount({ users, pages }: OnlineCounts): string {
  return `当前<b>${users}</b>人在线，共打开<b>${pages}</b>个页面`;
}

export class OnlineCountBroadcaster {
  private last: OnlineCounts = { users: 0, pages: 0 };
  private readonly timer: NodeJS.Timeout;
  private busy = false;
  private failing = false;

  /** `broadcast` sends the HTML to every socket of this node. */
  constructor(
    private readonly presence: Presence,
    private readonly broadcast: (html: string) => void,
    intervalMs: number,
    private readonly log: Logger,
  ) {
    this.timer = setInterval(() => void this.tick(), intervalMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.busy) return; // a slow presence backend must not pile up checks
    this.busy = true;
    try {
      const now = await this.presence.counts();
      if (now.users !== this.last.users || now.pages !== this.last.pages) {
        this.last = now;
        this.broadcast(formatOnlineCount(now));
      }
      this.failing = false;
    } catch (err) {
      if (!this.failing) this.log.error('online count check failed; retrying every tick', err);
      this.failing = true;
    } finally {
      this.busy = false;
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}
