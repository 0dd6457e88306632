// MAX_CONNECTIONS_PER_IP: connections open at once per client address, counted across every
// kind of client connection (Socket.IO and SSE streams share one count). One process counts
// its own; under WORKERS the primary counts for all its workers (cluster/shared-limits.ts), so
// the bound is the machine's, not each worker's.
import type { Logger } from './log.ts';

/** Places for connections, by client address: where the Socket.IO server and SSE streams take them. */
export interface ConnectionPlaces {
  /** Takes a place for `address`: false when it has MAX_CONNECTIONS_PER_IP open. */
  acquire(address: string): Promise<boolean>;
  /** Gives back a place acquire() took. */
  release(address: string): void;
}

/** Counts open connections per client address. */
export class ConnectionCounter implements ConnectionPlaces {
  private readonly open = new Map<string, number>();
  private refused = 0;
  private loggedAt = -Infinity;

  /** `max`: MAX_CONNECTIONS_PER_IP; 0 = no limit. */
  constructor(
    private readonly max: number,
    private readonly log: Logger,
  ) {}

  /** Takes a place now when `address` has fewer than the most open; a refusal is logged (rate-limited). */
  take(address: string): boolean {
    const open = this.open.get(address) ?? 0;
    if (this.max === 0 || open < this.max) {
      this.open.set(address, open + 1);
      return true;
    }
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

  acquire(address: string): Promise<boolean> {
    return Promise.resolve(this.take(address));
  }

  release(address: string): void {
    const n = (this.open.get(address) ?? 1) - 1;
    if (n <= 0) this.open.delete(address);
    else this.open.set(address, n);
  }
}
