// Who is online: per-uid page counts. The in-memory implementation is the single-node
// default; a cluster swaps in a shared one behind the same interface.

export interface OnlineCounts {
  /** Distinct logged-in uids. */
  users: number;
  /** Logged-in sockets (pages). */
  pages: number;
}

export interface Presence {
  /** Counts one more page of `uid`; true when it is the uid's first page. */
  addPage(uid: string): Promise<boolean>;
  /** Counts one page of `uid` less; true when it was the uid's last page. */
  removePage(uid: string): Promise<boolean>;
  isOnline(uid: string): Promise<boolean>;
  /** The uid's pages anywhere; 0 when offline. */
  pagesOf(uid: string): Promise<number>;
  /**
   * Online uids page by page: start with cursor null, pass the cursor it answers, stop at null.
   * A uid online through the whole walk is listed; one that comes or goes during it may not be.
   * `limit` is a hint: a page may hold fewer uids (even none) before the end, or more (Redis
   * answers a small set whole).
   */
  list(cursor: string | null, limit: number): Promise<{ uids: string[]; cursor: string | null }>;
  counts(): Promise<OnlineCounts>;
  /**
   * A shared presence may have answered offline for pages of this node for a while (Redis
   * lost or never got them: an outage, a restart, this node reaped); `listener` runs each time
   * it holds them all again. Pushes meanwhile were stored but not emitted to those pages.
   */
  onRestored?(listener: () => void): void;
  close(): Promise<void>;
}

export class MemoryPresence implements Presence {
  private readonly pagesByUid = new Map<string, number>();
  private pages = 0;

  async addPage(uid: string): Promise<boolean> {
    const n = (this.pagesByUid.get(uid) ?? 0) + 1;
    this.pagesByUid.set(uid, n);
    this.pages++;
    return n === 1;
  }

  async removePage(uid: string): Promise<boolean> {
    const n = this.pagesByUid.get(uid);
    if (n === undefined) return false;
    this.pages--;
    if (n > 1) {
      this.pagesByUid.set(uid, n - 1);
      return false;
    }
    this.pagesByUid.delete(uid);
    return true;
  }

  async isOnline(uid: string): Promise<boolean> {
    return this.pagesByUid.has(uid);
  }

  async pagesOf(uid: string): Promise<number> {
    return this.pagesByUid.get(uid) ?? 0;
  }

  /** The cursor is the last uid listed; uids come in sorted order, so churn cannot repeat one. */
  async list(cursor: string | null, limit: number): Promise<{ uids: string[]; cursor: string | null }> {
    const after = [...this.pagesByUid.keys()].filter((uid) => cursor === null || uid > cursor).sort();
    const uids = after.slice(0, limit);
    return { uids, cursor: after.length > limit ? uids[uids.length - 1]! : null };
  }

  async counts(): Promise<OnlineCounts> {
    return { users: this.pagesByUid.size, pages: this.pages };
  }

  async close(): Promise<void> {
    this.pagesByUid.clear();
    this.pages = 0;
  }
}
