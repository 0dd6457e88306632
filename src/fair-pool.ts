// A bound shared by every client, fair between them: what the whole process may hold at once,
// and the share of it one uid and one client address may hold, so that one client (many
// logins, many SSE streams that never read) cannot take it all. Two pools use it:
// MAX_REDELIVERY_BYTES (stored messages read or held for a redelivery: a request waits its
// turn) and SSE_MAX_REPLAYS (SSE streams replaying at once: a request past it is refused).

/** The bounds of a pool: in all, per uid, per client address. */
export interface FairShares {
  total: number;
  perUid: number;
  perAddress: number;
}

/** One uid may hold an eighth of a pool, one client address a quarter (at least 1 each). */
export function fairShares(total: number): FairShares {
  return { total, perUid: Math.max(1, Math.floor(total / 8)), perAddress: Math.max(1, Math.floor(total / 4)) };
}

/** Which bound a request does not fit. */
export type FullScope = 'total' | 'uid' | 'address';

interface Waiter {
  holder: PoolHolder;
  amount: number;
  grant: (granted: boolean) => void;
}

export class FairPool {
  private used = 0;
  private readonly byUid = new Map<string, number>();
  private readonly byAddress = new Map<string, number>();
  /** Takes waiting for room, in the order they came. */
  private readonly waiting: Waiter[] = [];
  private totalBlocked = false;

  constructor(readonly shares: FairShares) {}

  /** Held in all now. */
  get held(): number {
    return this.used;
  }

  /** Takes waiting now. */
  get waiters(): number {
    return this.waiting.length;
  }

  /** A waiting take does not fit the total: a new one goes after it, not before. */
  get queued(): boolean {
    return this.totalBlocked;
  }

  /** Takes from the pool on behalf of one client (a login, a stream): close() gives all back. */
  holder(uid: string, address: string): PoolHolder {
    return new PoolHolder(this, uid, address);
  }

  /**
   * The bound `amount` does not fit now, or null when it fits. An amount larger than a bound
   * fits when nothing is held under that bound: one message larger than the shares still goes,
   * alone.
   */
  full(uid: string, address: string, amount: number): FullScope | null {
    const over = (held: number, max: number) => held > 0 && held + amount > max;
    if (over(this.byUid.get(uid) ?? 0, this.shares.perUid)) return 'uid';
    if (over(this.byAddress.get(address) ?? 0, this.shares.perAddress)) return 'address';
    if (over(this.used, this.shares.total)) return 'total';
    return null;
  }

  /** @internal PoolHolder's: counts `amount` (negative: gives back) for the holder's uid and address. */
  add(holder: PoolHolder, amount: number): void {
    this.used += amount;
    bump(this.byUid, holder.uid, amount);
    bump(this.byAddress, holder.address, amount);
    if (amount < 0) this.grant();
  }

  /** @internal PoolHolder's: queues a take, granted now if it fits. */
  wait(waiter: Waiter): void {
    this.waiting.push(waiter);
    this.grant();
  }

  /** @internal PoolHolder's: forgets the holder's waiting take. */
  cancel(holder: PoolHolder): void {
    const at = this.waiting.findIndex((w) => w.holder === holder);
    if (at < 0) return;
    this.waiting.splice(at, 1)[0]!.grant(false);
    this.grant(); // it may have held the others back
  }

  /**
   * Grants waiting takes in order. One held back by its own uid's or address's share is passed
   * over (the others are not kept waiting on that client); one that does not fit the total
   * stops the rest, so a large take is not starved by smaller ones coming after it.
   */
  private grant(): void {
    this.totalBlocked = false;
    for (let i = 0; i < this.waiting.length; ) {
      const w = this.waiting[i]!;
      const full = this.full(w.holder.uid, w.holder.address, w.amount);
      if (full === 'total') {
        this.totalBlocked = true;
        return;
      }
      if (full !== null) {
        i++;
        continue;
      }
      this.waiting.splice(i, 1);
      this.add(w.holder, w.amount);
      w.holder.held += w.amount;
      w.grant(true);
    }
  }
}

function bump(map: Map<string, number>, key: string, amount: number): void {
  const n = (map.get(key) ?? 0) + amount;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}

/** What one client holds of a pool. */
export class PoolHolder {
  /** Held now. */
  held = 0;
  private closed = false;
  private waitingTake = false;

  constructor(
    private readonly pool: FairPool,
    readonly uid: string,
    readonly address: string,
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  /** Takes `amount` now if it fits; which bound it did not fit otherwise. */
  tryTake(amount: number): FullScope | null {
    if (this.closed) return 'total';
    const full = this.pool.queued ? 'total' : this.pool.full(this.uid, this.address, amount);
    if (full !== null) return full;
    this.pool.add(this, amount);
    this.held += amount;
    return null;
  }

  /**
   * Takes `amount`, waiting its turn when it does not fit (`waiting` is told, at once, that it
   * has to). Resolves false when the holder was closed first. One take at a time.
   */
  take(amount: number, waiting?: () => void): Promise<boolean> {
    if (this.waitingTake) throw new Error('a PoolHolder takes one amount at a time');
    if (this.closed) return Promise.resolve(false);
    this.waitingTake = true;
    const granted = new Promise<boolean>((grant) =>
      this.pool.wait({
        holder: this,
        amount,
        grant: (ok) => {
          this.waitingTake = false;
          grant(ok);
        },
      }),
    );
    if (this.waitingTake) waiting?.();
    return granted;
  }

  /** Gives back `amount` of what it holds (no more than it holds). */
  give(amount: number): void {
    const back = Math.min(amount, this.held);
    if (back <= 0) return;
    this.held -= back;
    this.pool.add(this, -back);
  }

  /** Gives back everything and ends a waiting take (false); idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pool.cancel(this);
    this.give(this.held);
  }
}
