// What reaches a logged-in page when a push and the page's login overlap, and when the store
// or the Redis connection was away while the page stayed connected: every push answered 200
// reaches its page without the page logging in again (the soak's "0 lost", bench/README.md).
import { expect } from 'chai';
import type { LoginReply, MessageMeta } from '../src/events.ts';
import { MemoryMessageStore, type StoreLimits } from '../src/message-store.ts';
import type { StoredMessage } from '../src/messages.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient, withDeadline } from './support/clients.ts';
import { startServer } from './support/server.ts';

const LIMITS: StoreLimits = { maxPendingPerUid: 10, maxBytes: 1 << 20, maxScheduled: 10, maxScheduledBytes: 1 << 20, maxIdempotencyBytes: 1 << 20 };

async function push(apiUrl: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${apiUrl}/api/v1/push`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/**
 * The memory store with the window of a slow commit (LMDB's fsync, a Redis round trip) held
 * open on purpose: an add waits until a login has read the uid's stored messages, so the
 * login reads before the add commits, every time.
 */
class AddAfterLoginStore extends MemoryMessageStore {
  private addStarted!: () => void;
  readonly adding = new Promise<void>((resolve) => (this.addStarted = resolve));
  private loginRead!: () => void;
  private readonly read = new Promise<void>((resolve) => (this.loginRead = resolve));

  override async add(uids: readonly string[], message: StoredMessage, bytes: number): Promise<number> {
    this.addStarted();
    await withDeadline(this.read, 'a login reading the store');
    return super.add(uids, message, bytes);
  }

  override async pending(uid: string): Promise<StoredMessage[]> {
    const pending = await super.pending(uid);
    this.loginRead();
    return pending;
  }
}

describe('a push and a login at the same time', () => {
  afterEach(cleanupAll);

  it('a page that logs in while its push is being stored gets it live: its login read the store before the add', async () => {
    const store = new AddAfterLoginStore(LIMITS);
    onCleanup(() => store.close());
    const server = await startServer({}, { store });
    const page = await connectClient('v4', server.ioUrl);
    // offline when the push starts: it is stored, and the add waits for the login below
    const answer = push(server.apiUrl, { to: 'racer', data: 'during the login', ttl: 60, id: 'race-1' });
    await store.adding;
    const login = await page.request<LoginReply>('login', 'racer');
    expect(login).to.deep.equal({ ok: true, uid: 'racer', pending: 0 });
    const answered = await answer;
    expect(answered.status).to.equal(200);
    // the page was online by the time the push was stored
    expect(answered.body).to.include({ id: 'race-1', stored: 1, onlineCount: 1 });
    const [data, meta] = await page.waitFor('message');
    expect(data).to.equal('during the login');
    expect((meta as MessageMeta).id).to.equal('race-1');
  });
});
