// MAX_CONNECTIONS_PER_IP: connections open at once per client address, counted across every
// kind of client connection of a node (Socket.IO and SSE streams share one count).
import type { Logger } from './log.ts';

/** Counts open connections per client address. */
export class ConnectionCounter {
  private readonly open = new Map<string, number>();
  private refused = 0;
  private loggedAt = -Infinity;

  /** `max`: MAX_CONNECTIONS_PER_IP; 0 = no limit. */
  constructor(
    private readonly max: number,
    private readonly log: Logger,
  ) {}

  /** True when `address` may open one more connection; a refusal is logged (rate-limited). */
  allows(address: string): boolean {
    if (this.max === 0 || (this.open.get(address) ?? 0) < this.max) return true;
    // one line per 10 s at most, so a client hammering the cap cannot flood the log
    this.refused++;
    const now = Date.now();
    if (now - this.loggedAt >= 10_000) {
      this.log.warn(`connection refused: ${address} has MAX_CONNECTIONS_PER_IP (${this.max}) open`, { refused: this.refused });
      this.loggedAt = now;
      this.refused = 0;
    }
    return false;
  }

  opened(address: string): void {
    this.open.set(address, (this.open.get(address) ?? 0) + 1);
  }

  closed(address: string): void {
    const n = (this.open.get(address) ?? 1) - 1;
    if (n <= 0) this.open.delete(address);
    else this.open.set(address, n);
  }
}
