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
  addPage(uid: string, socketId: string): Promise<boolean>;
  /** Counts one page of `uid` less; true when it was the uid's last page. */
  removePage(uid: string, socketId: string): Promise<boolean>;
  isOnline(uid: string): Promise<boolean>;
  counts(): Promise<OnlineCounts>;
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

  async counts(): Promise<OnlineCounts> {
    return { users: this.pagesByUid.size, pages: this.pages };
  }

  async close(): Promise<void> {
    this.pagesByUid.clear();
    this.pages = 0;
  }
}
