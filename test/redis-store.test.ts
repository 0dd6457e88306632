// The Redis message store: the MessageStore contract, what several nodes sharing it need
// (each due push taken once), and createRedisComponents, which builds it with the clients.
import { expect } from 'chai';
import { createServer as createHttpServer } from 'node:http';
import { Server } from 'socket.io';
import { silentLogger } from '../src/log.ts';
import type { ClaimedPush, StoreLimits } from '../src/message-store.ts';
import { RedisMessageStore } from '../src/cluster/redis-store.ts';
import { messageStoreContract } from './contracts/message-store.contract.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { sharedRedis, startRedis } from './support/redis-server.ts';
import { recordingLogger } from './support/logger.ts';
import { until } from './support/until.ts';
import type { PushSpec } from '../src/messages.ts';
import { closeRedis, connectRedis, RedisStartupError } from '../src/cluster/redis-client.ts';
import { createRedisComponents } from '../src/cluster/components.ts';
import { allPending } from './support/stored.ts';

const LIMITS: StoreLimits = { maxPendingPerUid: 1000, maxBytes: 1 << 30, maxScheduled: 10_000, maxScheduledBytes: 1 << 30, maxIdempotencyBytes: 1 << 30 };

function spec(id: string): PushSpec {
  return { id, to: ['u'], event: 'new_msg', data: id, ttlMs: 0, bytes: 4 };
}


describe('RedisMessageStore', () => {
  const shared = sharedRedis();
  let tests = 0;
  /** Every store its own keys on the shared redis-server. */
  const freshPrefix = () => `store-test-${++tests}:`;

  afterEach(cleanupAll);

  function open(limits: StoreLimits = LIMITS, prefix = freshPrefix()): RedisMessageStore {
    const store = new RedisMessageStore(shared.client(), limits, silentLogger, { prefix });
    onCleanup(() => store.close());
    return store;
  }

  messageStoreContract('redis', async (limits) => new RedisMessageStore(shared.client(), limits, silentLogger, { prefix: freshPrefix() }));

  it('reports each expired message once, though two stores sweep one Redis', async () => {
    const prefix = freshPrefix();
    const reports: string[] = [];
    const stores = [0, 1].map((i) => {
      const store = new RedisMessageStore(shared.client(), LIMITS, silentLogger, {
        prefix,
        onExpired: (uid, m) => reports.push(`${i}:${uid}/${m.id}/${m.event}`),
      });
      onCleanup(() => store.close());
      return store;
    });
    const now = Date.now();
    await stores[0]!.add(['a', 'b'], { id: 'm1', event: 'e1', data: 1, ts: now, expiresAt: now + 50 }, 10);
    await stores[0]!.add(['a'], { id: 'm2', event: 'e2', data: 2, ts: now, expiresAt: now + 60_000 }, 10);
    await Promise.all([stores[0]!.sweep(now + 100), stores[1]!.sweep(now + 100), stores[1]!.sweep(now + 100)]);
    expect(reports.map((r) => r.slice(2)).sort()).to.deep.equal(['a/m1/e1', 'b/m1/e1']);
    expect((await allPending(stores[1]!, 'a')).map((m) => m.id)).to.deep.equal(['m2']);
  });

  it('counts drops and expiries on the node that made them, so a sum over nodes is the cluster total', async () => {
    const prefix = freshPrefix();
    const limits = { ...LIMITS, maxPendingPerUid: 1 };
    const stores = [open(limits, prefix), open(limits, prefix)];
    const now = Date.now();
    const m = (id: string, expiresAt = now + 60_000) => ({ id, event: 'e', data: 1, ts: now, expiresAt });
    await stores[0]!.add(['a'], m('m1'), 10);
    await stores[0]!.add(['a'], m('m2'), 10); // drops m1
    await stores[1]!.add(['a'], m('m3'), 10); // drops m2
    await stores[1]!.add(['a', 'b'], m('m4', now + 50), 10); // drops m3
    expect(await stores[1]!.sweep(now + 100)).to.equal(2);
    expect(await stores[0]!.sweep(now + 100)).to.equal(0);
    const [zero, one] = await Promise.all(stores.map((s) => s.stats()));
    expect(zero).to.include({ dropped: 1, expired: 0, messages: 0 });
    expect(one).to.include({ dropped: 2, expired: 2, messages: 0 });
  });

  it('hands each due push to exactly one of several nodes claiming at once', async () => {
    const prefix = freshPrefix();
    // two nodes: their own store and their own connection, one Redis
    const other = await connectRedis(shared.server().url, silentLogger);
    onCleanup(() => closeRedis(other));
    const stores = [open(LIMITS, prefix), new RedisMessageStore(other, LIMITS, silentLogger, { prefix })];
    onCleanup(() => stores[1]!.close());
    const now = Date.now();
    for (let i = 0; i < 200; i++) {
      expect(await stores[0]!.schedule({ at: now - 1000 + i, spec: spec(`p${i}`) })).to.equal('scheduled');
    }
    const taken: ClaimedPush[][] = [[], []];
    // both claim repeatedly, concurrently, in small batches, until nothing is due
    await Promise.all(
      stores.map(async (store, n) => {
        for (let round = 0; round < 50; round++) {
          const due = await Promise.all([store.claimDue(now, now + 60_000, 7), store.claimDue(now, now + 60_000, 7)]);
          for (const batch of due) taken[n]!.push(...batch);
          if (due.every((batch) => batch.length === 0)) return;
        }
      }),
    );
    const ids = [...taken[0]!, ...taken[1]!].map((c) => c.push.spec.id);
    expect(ids).to.have.length(200);
    expect(new Set(ids).size).to.equal(200);
    expect(await stores[1]!.claimDue(now + 1000, now + 60_000, 1000)).to.deep.equal([]);
    expect(await stores[0]!.fired(taken[1]!)).to.equal(taken[1]!.length);
    expect(await stores[1]!.fired(taken[0]!)).to.equal(taken[0]!.length);
    expect(await stores[0]!.stats()).to.include({ scheduled: 0, scheduledBytes: 0 });
  });

  it('gives the pushes of a node that claimed them and died to another node when the lease runs out', async () => {
    const prefix = freshPrefix();
    const other = await connectRedis(shared.server().url, silentLogger);
    onCleanup(() => closeRedis(other));
    const dead = new RedisMessageStore(other, LIMITS, silentLogger, { prefix });
    const alive = open(LIMITS, prefix);
    const now = Date.now();
    for (const id of ['a', 'b']) await alive.schedule({ at: now - 10, spec: spec(id) });
    const lease = Date.now() + 300;
    // the node claims, then dies before making them: its store and connection go
    expect((await dead.claimDue(Date.now(), lease, 10)).map((c) => c.push.spec.id)).to.deep.equal(['a', 'b']);
    await dead.close();
    await closeRedis(other);
    expect(await alive.claimDue(Date.now(), Date.now() + 60_000, 10)).to.deep.equal([]);
    let claimed: ClaimedPush[] = [];
    await until(async () => (claimed = await alive.claimDue(Date.now(), Date.now() + 60_000, 10)).length > 0, 'the dead node\'s lease to run out');
    expect(Date.now()).to.be.at.least(lease);
    expect(claimed.map((c) => [c.push.spec.id, c.claims])).to.deep.equal([['a', 2], ['b', 2]]);
    expect(await alive.fired(claimed)).to.equal(2);
    expect(await alive.stats()).to.include({ scheduled: 0 });
  });

  it('sweeps expired messages once, counting them, whichever node sweeps', async () => {
    const prefix = freshPrefix();
    const [a, b] = [open(LIMITS, prefix), open(LIMITS, prefix)];
    const now = Date.now();
    await a.add(['u'], { id: 'short', event: 'e', data: 1, ts: now, expiresAt: now + 10 }, 50);
    await a.add(['u', 'v'], { id: 'long', event: 'e', data: 1, ts: now, expiresAt: now + 60_000 }, 50);
    await a.add(['w'], { id: 'acked', event: 'e', data: 1, ts: now, expiresAt: now + 10 }, 50);
    await b.ack('w', 'acked');
    const removed = await Promise.all([a.sweep(now + 20), b.sweep(now + 20)]);
    expect(removed[0] + removed[1]).to.equal(1);
    expect(await a.stats()).to.include({ messages: 2, bytes: 100, expired: 1 });
    expect((await allPending(b, 'u')).map((m) => m.id)).to.deep.equal(['long']);
  });

  it('keeps the data of a message as JSON gave it, for every uid', async () => {
    const store = open();
    const now = Date.now();
    const data = { text: 'a "quoted" \\ line\nnext', n: 1.5, list: [null, true, '/'], nested: { '': 'empty key' } };
    await store.add(['a', 'b:c'], { id: 'm1', event: 'order.updated', data, ts: now, expiresAt: now + 60_000 }, 10);
    for (const uid of ['a', 'b:c']) {
      expect(await allPending(store, uid)).to.deep.equal([{ id: 'm1', event: 'order.updated', data, ts: now, expiresAt: now + 60_000 }]);
    }
    expect(await allPending(store, 'b')).to.deep.equal([]);
  });

  it('shares its keys between stores with one prefix, and not with another prefix', async () => {
    const prefix = freshPrefix();
    const [a, b, elsewhere] = [open(LIMITS, prefix), open(LIMITS, prefix), open()];
    const now = Date.now();
    await a.add(['u'], { id: 'm1', event: 'e', data: 1, ts: now, expiresAt: now + 60_000 }, 10);
    expect(await a.claim('k', now + 60_000)).to.deep.equal({ first: true });
    expect((await allPending(b, 'u')).map((m) => m.id)).to.deep.equal(['m1']);
    expect(await b.claim('k', now + 60_000)).to.deep.equal({ first: false, result: null });
    expect(await allPending(elsewhere, 'u')).to.deep.equal([]);
    expect(await elsewhere.claim('k', now + 60_000)).to.deep.equal({ first: true });
  });
});

describe('createRedisComponents', () => {
  const shared = sharedRedis();
  afterEach(cleanupAll);

  it('rejects at once with one line naming REDIS_URL when nothing listens', async () => {
    // a port that was free a moment ago: stop a redis-server and use its port
    const gone = await startRedis();
    await gone.stop();
    const url = `redis://:secret@127.0.0.1:${gone.port}`;
    const started = Date.now();
    let error: unknown;
    await createRedisComponents(url, 'n1', silentLogger, LIMITS).catch((err: unknown) => (error = err));
    expect(Date.now() - started).to.be.below(3000);
    expect(error).to.be.instanceOf(RedisStartupError);
    const message = (error as Error).message;
    expect(message).to.equal(`REDIS_URL redis://***@127.0.0.1:${gone.port}: cannot connect (ECONNREFUSED)`);
    expect(message).not.to.include('secret');
  });

  it('builds a node on Redis whose close() releases every client and timer', async () => {
    const log = recordingLogger();
    const components = await createRedisComponents(shared.server().url, 'n1', log, LIMITS, { prefix: 'components-1:' });
    onCleanup(() => components.close());
    await components.presence.addPage('u');
    expect(await components.presence.isOnline('u')).to.equal(true);
    const now = Date.now();
    expect(await components.store.add(['u'], { id: 'm', event: 'e', data: 1, ts: now, expiresAt: now + 60_000 }, 10)).to.equal(1);
    await components.close();
    await components.close();
    // what the node held is gone from Redis, and so are its three connections; its timers
    // are cleared (else mocha, which runs without --exit, would not end)
    const check = await connectRedis(shared.server().url, silentLogger);
    onCleanup(() => closeRedis(check));
    expect(await check.hExists('components-1:presence:users', 'u')).to.equal(0);
    const connections = async () => String(await check.sendCommand(['CLIENT', 'LIST'])).trim().split('\n').length;
    await until(async () => (await connections()) === 2, 'only this check and the shared client left');
    // nothing but the start's word on this Redis, which keeps nothing on disk
    expect(log.lines).to.have.length(1);
    expect(log.lines[0]).to.match(/^warn: redis redis:\/\/127\.0\.0\.1:\d+: persistence is off/);
  });

  it('carries broadcasts between nodes, and survives Redis going away under them', async function () {
    this.timeout(30_000);
    const own = await startRedis(); // stopped below: not the shared one
    onCleanup(() => own.stop());
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    onCleanup(() => process.off('unhandledRejection', onUnhandled));

    const nodes = await Promise.all(
      ['n1', 'n2'].map(async (nodeId) => {
        const log = recordingLogger();
        const components = await createRedisComponents(own.url, nodeId, log, LIMITS, { prefix: 'components-2:' });
        onCleanup(() => components.close());
        const http = createHttpServer();
        const io = new Server(http, { adapter: components.adapter });
        onCleanup(() => new Promise<void>((resolve) => io.close(() => resolve()))); // before components.close()
        return { io, log };
      }),
    );
    const [n1, n2] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
    // a server-side emit of n1 reaches n2 through Redis and n2's answer comes back
    n2.io.on('ping', (ack: (reply: string) => void) => ack('pong'));
    const ping = () => n1.io.serverSideEmitWithAck('ping').catch(() => []);
    await until(async () => JSON.stringify(await ping()) === '["pong"]', 'n2 to answer n1 through Redis');

    // Redis goes while broadcasts are in flight: no unhandled rejection, one line per outage
    for (let i = 0; i < 500; i++) n1.io.emit('news', i);
    await own.stop();
    for (let i = 0; i < 100; i++) n1.io.emit('news', i);
    await until(() => nodes.every(({ log }) => log.lines.some((l) => l.includes('connection lost'))), 'the outage to be logged');
    await own.start();
    await until(() => nodes.every(({ log }) => log.lines.some((l) => l.includes('connected again'))), 'the clients to reconnect', 10_000);
    await until(async () => JSON.stringify(await ping()) === '["pong"]', 'n2 to answer n1 again');
    expect(unhandled).to.deep.equal([]);
    for (const { log } of nodes) {
      expect(log.lines.filter((l) => l.includes('connection lost')), log.lines.join('\n')).to.have.length(1);
      expect(log.lines.filter((l) => l.startsWith('error')), log.lines.join('\n')).to.deep.equal([]);
    }
  });
});
