// A uid's stored messages read for one redelivery (a Socket.IO login, an SSE replay) a page at
// a time. Each page's bytes are taken from MAX_REDELIVERY_BYTES before it is read, and each
// message's are given back once done with (acked, timed out, written, expired), so what every
// redelivery reads or holds at once is bounded, and one uid or client address holds no more
// than its share: past it a redelivery waits its turn.
import type { PoolHolder } from './fair-pool.ts';
import type { MessageStore, PendingEntry, PendingPage } from './message-store.ts';

export class Backlog {
  private cursor: number;
  private ended = false;

  /**
   * `after`: the cursor to start after (0: the oldest). `maxRoom`: the most one page may take,
   * the smallest share of the pool (a larger message still goes, alone).
   */
  constructor(
    private readonly store: MessageStore,
    private readonly holder: PoolHolder,
    private readonly uid: string,
    after: number,
    private readonly maxRoom: number,
  ) {
    this.cursor = after;
  }

  get closed(): boolean {
    return this.holder.isClosed;
  }

  /**
   * The next page: at most `limit` messages and `maxBytes` (as the store counts them; a message
   * larger than that comes alone), their bytes held until done() is told of each. Waits for the
   * bytes when the pool is full (`waiting` is told at once that it does). Null when no message
   * is left, or once closed. Rejects when the store cannot be read: nothing is held then.
   */
  async next(limit: number, maxBytes: number, waiting?: () => void): Promise<PendingEntry[] | null> {
    const usual = Math.max(1, Math.min(maxBytes, this.maxRoom));
    let room = usual;
    while (!this.ended && !this.closed) {
      if (!(await this.holder.take(room, waiting))) return null;
      let page: PendingPage;
      try {
        page = await this.store.pendingPage(this.uid, this.cursor, Math.max(1, limit), room);
      } catch (err) {
        this.holder.give(room);
        throw err;
      }
      let used = 0;
      for (const entry of page.entries) used += entry.bytes;
      this.holder.give(room - used);
      if (this.closed) return null; // close() gave back the whole take meanwhile
      if (page.next === null) this.ended = true;
      else this.cursor = page.next;
      if (page.entries.length > 0) return page.entries;
      // none had room: the next take is the first message's size (the store named it), else
      // the page held only expired ones
      room = page.nextBytes ?? usual;
    }
    return null;
  }

  /** A message of a page is done with: its bytes go back to the pool. */
  done(bytes: number): void {
    this.holder.give(bytes);
  }

  /** Gives back everything held (a disconnect, the end); a waiting next() resolves null. Idempotent. */
  close(): void {
    this.holder.close();
  }
}
