// What reaches a logged-in page when a push and the page's login overlap, and when the store
// or the Redis connection was away while the page stayed connected: every push answered 200
// reaches its page without the page logging in again (the soak's "0 lost", bench/README.md).
import { expect } from 'chai';
import type { LoginReply, MessageMeta } from '../src/events.ts';
import { closeRedis, connectRedis } from '../src/cluster/redis-client.ts';
import { RedisMessageStore } from '../src/cluster/redis-store.ts';
import { silentLogger } from '../src/log.ts';
import { MemoryMessageStore, StoreUnavailableError, type StoreLimits } from '../src/message-store.ts';
import type { StoredMessage } from '../src/messages.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient, withDeadline, type TestClient } from './support/clients.ts';
import { REDIS_SERVER, startRedis, type TestRedis } from './support/redis-server.ts';
import { startServer, type TestServer } from './support/server.ts';
import { until } from './support/until.ts';

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

  override async pendingCount(uid: string): Promise<number> {
    const count = await super.pendingCount(uid);
    this.loginRead();
    return count;
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

/**
 * A message kept in Redis for `uid` that no emit carried to its page: what a live emit lost
 * to an adapter that was resubscribing leaves behind. Written by the real Redis store.
 */
async function storeUnsent(url: string, uid: string, id: string): Promise<void> {
  const client = await connectRedis(url, silentLogger);
  const store = new RedisMessageStore(client, LIMITS, silentLogger);
  try {
    const ts = Date.now();
    expect(await store.add([uid], { id, event: 'message', data: id, ts, expiresAt: ts + 60_000 }, 100)).to.equal(1);
  } finally {
    await store.close();
    await closeRedis(client);
  }
}

async function loggedIn(url: string, uid: string): Promise<TestClient> {
  const page = await connectClient('v4', url);
  await page.login(uid);
  return page;
}

function idsOf(page: TestClient): string[] {
  return page.received('message').map(([, meta]) => (meta as MessageMeta).id);
}

/** The Redis client ids connected now, but for the asking connection's own. */
async function redisClientIds(url: string): Promise<Set<string>> {
  const client = await connectRedis(url, silentLogger);
  try {
    const own = String(await client.clientId());
    const list = await client.clientList();
    return new Set(list.map((c) => String(c.id)).filter((id) => id !== own));
  } finally {
    await closeRedis(client);
  }
}

/** The memory store, whose first reads of stored messages fail as a disk or Redis away would. */
class UnreadableStore extends MemoryMessageStore {
  unreadable = 1;

  override async pendingCount(uid: string): Promise<number> {
    if (this.unreadable > 0) {
      this.unreadable--;
      throw new StoreUnavailableError('the message store cannot read: test');
    }
    return super.pendingCount(uid);
  }
}

describe('a login that cannot read the store', () => {
  afterEach(cleanupAll);

  it('answers ok, and the page gets its stored messages once the store answers, without logging in again', async () => {
    const store = new UnreadableStore(LIMITS);
    onCleanup(() => store.close());
    const server = await startServer({}, { store });
    expect((await push(server.apiUrl, { to: 'reader', data: 'kept', ttl: 60, id: 'kept-1' })).body).to.include({ stored: 1 });
    const page = await connectClient('v4', server.ioUrl);
    expect(await page.request<LoginReply>('login', 'reader')).to.deep.equal({ ok: true, uid: 'reader', pending: 0 });
    expect(store.unreadable).to.equal(0);
    await page.waitFor('message', (_d, meta) => (meta as MessageMeta).id === 'kept-1');
    expect(idsOf(page)).to.deep.equal(['kept-1']);
  });
});

describe('pages that stay connected through a Redis outage', function () {
  this.timeout(30_000);
  let redis: TestRedis;

  beforeEach(async function () {
    if (!REDIS_SERVER) return this.skip();
    redis = await startRedis({ persist: true });
    onCleanup(() => redis.close());
  });
  afterEach(cleanupAll);

  async function node(): Promise<TestServer> {
    return startServer({ redisUrl: redis.url, redisCommandTimeoutMs: 500 });
  }

  it('get what is stored for them once Redis is back, without logging in again: a login during the outage, a live emit lost', async () => {
    const a = await node();
    const steady = await loggedIn(a.ioUrl, 'steady');
    // offline at the push: kept for its next login, which comes while Redis is down
    const stored = await push(a.apiUrl, { to: 'comer', data: 'kept', ttl: 60, id: 'for-comer' });
    expect(stored.body).to.include({ stored: 1 });
    // for the page online all along, kept but never emitted to it
    await storeUnsent(redis.url, 'steady', 'missed-live');
    await redis.aofWritten();

    await redis.stop();
    await until(async () => (await fetch(`${a.apiUrl}/readyz`)).status === 503, 'the node to see Redis gone');
    const comer = await connectClient('v4', a.ioUrl);
    // the login works (live pushes reach it) though its stored messages cannot be read now
    expect(await comer.request<LoginReply>('login', 'comer')).to.deep.equal({ ok: true, uid: 'comer', pending: 0 });
    await redis.start();

    await comer.waitFor('message', (_d, meta) => (meta as MessageMeta).id === 'for-comer', 10_000);
    await steady.waitFor('message', (_d, meta) => (meta as MessageMeta).id === 'missed-live', 10_000);
    expect(idsOf(comer)).to.deep.equal(['for-comer']);
    expect(idsOf(steady)).to.deep.equal(['missed-live']);
  });

  it('get what was stored for them while the shared presence had lost them, once their node writes them back', async () => {
    const a = await node();
    const page = await loggedIn(a.ioUrl, 'forgotten');
    const killer = await connectRedis(redis.url, silentLogger);
    onCleanup(() => closeRedis(killer));
    // Redis loses the presence (a restart without it, or the node reaped): pushes find the
    // page offline, so they are stored and not emitted, until the node's next heartbeat
    // writes its pages back. A heartbeat that came between the loss and the push is tried again.
    let answered: Record<string, unknown> = {};
    for (let attempt = 1; attempt <= 3 && answered.onlineCount !== 0; attempt++) {
      await killer.del(await killer.keys('push:presence:*'));
      answered = (await push(a.apiUrl, { to: 'forgotten', data: 'while forgotten', ttl: 60, id: `forgotten-${attempt}` })).body;
    }
    expect(answered).to.include({ stored: 1, onlineCount: 0 });
    await page.waitFor('message', (_d, meta) => (meta as MessageMeta).id === answered.id, 10_000);
  });

  it('on another node get what is stored for them when one node reconnects: what it published meanwhile may be lost', async () => {
    const a = await node();
    const before = await redisClientIds(redis.url);
    const b = await node();
    const onlyB = [...(await redisClientIds(redis.url))].filter((id) => !before.has(id));
    expect(onlyB.length).to.be.greaterThan(0);
    const page = await loggedIn(a.ioUrl, 'on-a');
    // a push through B whose publish failed (B's connection was away): kept, never emitted
    await storeUnsent(redis.url, 'on-a', 'lost-publish');

    // only B loses Redis; A stays connected and has nothing to recover from
    const killer = await connectRedis(redis.url, silentLogger);
    onCleanup(() => closeRedis(killer));
    for (const id of onlyB) await killer.sendCommand(['CLIENT', 'KILL', 'ID', id]);

    await page.waitFor('message', (_d, meta) => (meta as MessageMeta).id === 'lost-publish', 10_000);
    expect(idsOf(page)).to.deep.equal(['lost-publish']);
    expect(b.io.of('/').sockets.size).to.equal(0);
  });
});
