// Token buckets by key (a client address, a socket): `rate` tokens a second, holding at most
// `burst`. One class for every rate limit, so they all behave alike.

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter<K = string> {
  private readonly buckets = new Map<K, Bucket>();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {}

  /** Takes one token for `key`: 0 when allowed, else how many ms until one is there. */
  take(key: K, now = Date.now()): number {
    let bucket = this.buckets.get(key);
    if (!bucket) {
      bucket = { tokens: this.burst, at: now };
      this.buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) * this.rate) / 1000);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - bucket.tokens) * 1000) / this.rate);
  }

  forget(key: K): void {
    this.buckets.delete(key);
  }

  /** Forgets buckets that are full again: they hold nothing a new bucket would not. */
  sweep(now = Date.now()): void {
    for (const [key, b] of this.buckets) {
      if (b.tokens + ((now - b.at) * this.rate) / 1000 >= this.burst) this.buckets.delete(key);
    }
  }
}
