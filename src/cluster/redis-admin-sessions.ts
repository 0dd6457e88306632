// The admin page's sessions in Redis: one sorted set (`<prefix>admin-sessions`, session id ->
// expiry in ms), so a sign-out on any WORKERS process or cluster node ends the session on all
// of them, and sessions outlive a restart. Bounded as in memory: expired ones and the oldest
// past MAX_ADMIN_SESSIONS go at each sign-in. One key, single-key commands: in a Redis Cluster
// it lives on one slot.
import { MAX_ADMIN_SESSIONS, type AdminSessions } from '../admin/sessions.ts';
import type { RedisCommands } from './redis-cluster-client.ts';

export class RedisAdminSessions implements AdminSessions {
  private readonly key: string;

  constructor(
    private readonly client: RedisCommands,
    prefix: string,
  ) {
    this.key = `${prefix}admin-sessions`;
  }

  async add(id: string, expiresAt: number, now = Date.now()): Promise<void> {
    await this.client.zRemRangeByScore(this.key, '-inf', now);
    await this.client.zAdd(this.key, { score: expiresAt, value: id });
    await this.client.zRemRangeByRank(this.key, 0, -(MAX_ADMIN_SESSIONS + 1));
    // the whole set goes when its newest session ends (all last ADMIN_SESSION_SECONDS)
    await this.client.pExpireAt(this.key, expiresAt);
  }

  async has(id: string, now = Date.now()): Promise<boolean> {
    return ((await this.client.zScore(this.key, id)) ?? 0) > now;
  }

  async remove(id: string): Promise<void> {
    await this.client.zRem(this.key, id);
  }
}
