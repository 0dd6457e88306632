// A min-heap of (time, key): what is due first comes out first. Used for message expiry,
// idempotency keys and scheduled pushes, so none of them scans everything to find the due.

interface Entry<K> {
  at: number;
  key: K;
}

export class ExpiryQueue<K> {
  private heap: Entry<K>[] = [];

  get size(): number {
    return this.heap.length;
  }

  /** When the earliest entry is due, or undefined when there is none. */
  get nextAt(): number | undefined {
    return this.heap[0]?.at;
  }

  push(at: number, key: K): void {
    const heap = this.heap;
    heap.push({ at, key });
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.at <= heap[i]!.at) break;
      [heap[parent], heap[i]] = [heap[i]!, heap[parent]!];
      i = parent;
    }
  }

  /** Removes and returns the keys due at or before `now`, earliest first, at most `limit`. */
  popDue(now: number, limit = Infinity): K[] {
    const due: K[] = [];
    while (due.length < limit && this.heap.length > 0 && this.heap[0]!.at <= now) due.push(this.popMin().key);
    return due;
  }

  /** Keeps only the entries whose key passes `keep` (for dropping stale entries in bulk). */
  retain(keep: (key: K) => boolean): void {
    const kept = this.heap.filter((e) => keep(e.key)).sort((a, b) => a.at - b.at);
    this.heap = kept; // a sorted array is a valid heap
  }

  private popMin(): Entry<K> {
    const heap = this.heap;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && heap[l]!.at < heap[m]!.at) m = l;
        if (r < heap.length && heap[r]!.at < heap[m]!.at) m = r;
        if (m === i) break;
        [heap[m], heap[i]] = [heap[i]!, heap[m]!];
        i = m;
      }
    }
    return top;
  }
}
