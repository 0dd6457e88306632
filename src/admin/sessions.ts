// The admin page's signed-in sessions. A session cookie names its session (web.ts), and a
// session counts only while it is here: signing out removes it, so the old cookie is refused
// at once, on every process that shares this list. In memory for one process; with Redis the
// list is shared by every WORKERS process and cluster node (cluster/redis-admin-sessions.ts)
// and outlives a restart. Without Redis a restart signs the admin page out: the list is gone,
// so a revoked cookie never comes back.

/** Sessions kept at once; a sign-in past it ends the oldest. One takes about 100 bytes. */
export const MAX_ADMIN_SESSIONS = 1000;

export interface AdminSessions {
  /** Remembers session `id` until `expiresAt` (ms since the epoch). */
  add(id: string, expiresAt: number): Promise<void>;
  /** Whether session `id` is signed in at `now`. */
  has(id: string, now?: number): Promise<boolean>;
  /** Signs session `id` out; nothing when it is not signed in. */
  remove(id: string): Promise<void>;
}

/** The sessions of one process. */
export class MemoryAdminSessions implements AdminSessions {
  /** id -> expiry; in order of sign-in, which is the order of expiry (one session length). */
  private readonly sessions = new Map<string, number>();

  async add(id: string, expiresAt: number, now = Date.now()): Promise<void> {
    for (const [old, until] of this.sessions) {
      if (until > now && this.sessions.size < MAX_ADMIN_SESSIONS) break;
      this.sessions.delete(old); // expired, or the oldest of a full list
    }
    this.sessions.set(id, expiresAt);
  }

  async has(id: string, now = Date.now()): Promise<boolean> {
    return (this.sessions.get(id) ?? 0) > now;
  }

  async remove(id: string): Promise<void> {
    this.sessions.delete(id);
  }

  get size(): number {
    return this.sessions.size;
  }
}
