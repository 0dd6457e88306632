// GET /api/v1/messages/:id: what became of a push, per uid (stored, delivered, acked, expired,
// dropped) or the sockets a broadcast or topic reached. Real servers, real socket.io clients
// 4.x (with acks) and 2.x (legacy pages), a real redis-server for two nodes.
import { expect } from 'chai';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient, type TestClient } from './support/clients.ts';
import { REDIS_SERVER, startRedis, type TestRedis } from './support/redis-server.ts';
import { startServer, type TestServer } from './support/server.ts';
import { SseClient } from './support/sse-client.ts';
import { until } from './support/until.ts';
import type { Config } from '../src/config.ts';
import { isSnapshotOf, MessageStatus, STATUS_ENTRY_OVERHEAD, STATUS_UID_OVERHEAD, UID_STATES, type StatusSnapshot } from '../src/message-status.ts';
import { seededRandom } from '../bench/stats.ts';

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);

/** Object.prototype's own names: uids that a plain object keyed by uid dropped from the answer. */
const PROTOTYPE_NAMES = Object.getOwnPropertyNames(Object.prototype);

const PUSH_SECRET = 'status-test-secret-0123';
const auth = { authorization: `Bearer ${PUSH_SECRET}` };

interface UidStatus {
  state: string;
  at: string;
  history: Record<string, string>;
}
interface Status {
  id: string;
  kind: string;
  topic?: string;
  ts: string | null;
  sockets?: number;
  uids?: Record<string, UidStatus>;
  error?: { code: string; message: string };
}

async function push(server: TestServer, body: unknown): Promise<{ id: string }> {
  const res = await fetch(`${server.apiUrl}/api/v1/push`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(res.status, await res.clone().text()).to.equal(200);
  return (await res.json()) as { id: string };
}

async function statusOf(server: TestServer, id: string): Promise<{ status: number; body: Status }> {
  const res = await fetch(`${server.apiUrl}/api/v1/messages/${encodeURIComponent(id)}`, { headers: auth });
  return { status: res.status, body: (await res.json()) as Status };
}

async function stateOf(server: TestServer, id: string, uid: string): Promise<string | undefined> {
  const { body } = await statusOf(server, id);
  // own keys only: on a plain object a missing `constructor` would be Object
  return body.uids && Object.hasOwn(body.uids, uid) ? body.uids[uid]!.state : undefined;
}

function start(overrides: Partial<Config> = {}): Promise<TestServer> {
  return startServer({ pushSecret: PUSH_SECRET, ...overrides });
}

/** A 4.x page logged in as `uid` that tracks `event`. */
async function page(server: TestServer, uid: string, event = 'message'): Promise<TestClient> {
  const client = await connectClient('v4', server.ioUrl);
  client.track(event);
  await client.login(uid);
  return client;
}

/** Acks the message `id` the client received (the ack callback is the last argument). */
async function ackMessage(client: TestClient, id: string, event = 'message'): Promise<void> {
  const [, , ack] = await client.waitFor(event, (_d, meta) => (meta as { id: string }).id === id);
  (ack as () => void)();
}

describe('message status', function () {
  this.timeout(20_000);
  afterEach(cleanupAll);

  it('a stored push to an online 4.x page: stored and delivered at once, then acked when the page acks', async () => {
    const server = await start();
    const client = await page(server, 'u1');
    const { id } = await push(server, { to: 'u1', data: { n: 1 }, ttl: 60 });
    const first = await statusOf(server, id);
    expect(first.status).to.equal(200);
    expect(first.body.kind).to.equal('uids');
    expect(first.body.uids!['u1']!.state).to.equal('delivered');
    expect(first.body.uids!['u1']!.history).to.have.keys('stored', 'delivered');
    await ackMessage(client, id);
    await until(async () => (await stateOf(server, id, 'u1')) === 'acked', 'the status to say acked');
    const { body } = await statusOf(server, id);
    expect(body.uids!['u1']!.history).to.have.keys('stored', 'delivered', 'acked');
    expect(Date.parse(body.uids!['u1']!.at)).to.be.at.least(Date.parse(body.uids!['u1']!.history['delivered']!));
  });

  it('a fire-and-forget push: delivered to a legacy 2.x page that is online, dropped for a uid that is offline', async () => {
    const server = await start();
    const legacy = await connectClient('v2', server.ioUrl);
    await legacy.legacyLogin('old');
    const { id } = await push(server, { to: ['old', 'gone'], event: 'new_msg', data: 'hi <b>' });
    await legacy.waitFor('new_msg', (m) => m === 'hi &lt;b&gt;');
    const { body } = await statusOf(server, id);
    expect(body.uids!['old']!.state).to.equal('delivered');
    expect(body.uids!['gone']!.state).to.equal('dropped');
    expect(body.uids!['gone']!.history).to.have.keys('dropped');
  });

  it('stored for an offline uid, then delivered at its login and acked', async () => {
    const server = await start();
    const { id } = await push(server, { to: 'late', data: 'kept', ttl: 60 });
    expect(await stateOf(server, id, 'late')).to.equal('stored');
    const client = await page(server, 'late');
    await until(async () => (await stateOf(server, id, 'late')) === 'delivered', 'the redelivery to be recorded');
    await ackMessage(client, id);
    await until(async () => (await stateOf(server, id, 'late')) === 'acked', 'the ack of the redelivery');
  });

  it('an SSE stream: stored messages replayed are delivered, and the Last-Event-ID acks up to and including it', async () => {
    const server = await start();
    const ids: string[] = [];
    for (const data of ['s1', 's2', 's3']) ids.push((await push(server, { to: 'reader', data, ttl: 60 })).id);
    const first = await SseClient.open(`${server.ioUrl}/events?uid=reader`);
    onCleanup(() => first.close());
    await first.waitFor((e) => e.id === ids[2], 'the three stored messages');
    for (const id of ids) expect(await stateOf(server, id, 'reader'), id).to.equal('delivered');
    first.close();
    // the reconnect reports the first id as its last: that one is acked, the others stay delivered
    const again = await SseClient.open(`${server.ioUrl}/events?uid=reader`, { 'last-event-id': ids[0]! });
    onCleanup(() => again.close());
    await again.waitFor((e) => e.id === ids[2], 'the two after the last id');
    await until(async () => (await stateOf(server, ids[0]!, 'reader')) === 'acked', 'the ack by Last-Event-ID');
    expect(await stateOf(server, ids[1]!, 'reader')).to.equal('delivered');
    expect(await stateOf(server, ids[2]!, 'reader')).to.equal('delivered');
  });

  it('uids named like Object.prototype members (constructor, toString, __proto__, ...) each have their own state', async () => {
    const server = await start();
    const online = ['constructor', '__proto__'];
    const pages = await Promise.all(online.map((uid) => page(server, uid)));
    const { id } = await push(server, { to: [...PROTOTYPE_NAMES, 'plain'], data: 'x', ttl: 60 });
    const { body } = await statusOf(server, id);
    expect(Object.keys(body.uids!).sort()).to.deep.equal([...PROTOTYPE_NAMES, 'plain'].sort());
    // merging into a plain object wrote into the members found: Object[0..4], toString[0..4]
    expect(Object.getOwnPropertyNames(Object).filter((k) => /^\d+$/.test(k))).to.deep.equal([]);
    for (const uid of [...PROTOTYPE_NAMES, 'plain']) {
      expect(await stateOf(server, id, uid), uid).to.equal(online.includes(uid) ? 'delivered' : 'stored');
    }
    await ackMessage(pages[1]!, id);
    await until(async () => (await stateOf(server, id, '__proto__')) === 'acked', 'the ack of __proto__');
    expect(await stateOf(server, id, 'constructor')).to.equal('delivered');
  });

  it('takes from a cluster peer only well-formed snapshots of the message asked about', () => {
    const good = { id: 'm1', kind: 'uids', ts: 1, keepUntil: 2, uids: { u: [1, 0, 0, 0, 0] } };
    const replies: unknown[] = [
      good,
      { ...good, id: 'another' }, // about another message
      { ...good, uids: { u: 'not an array' } }, // would throw when merged
      { ...good, uids: { u: [1, 2] } },
      { ...good, kind: 'nonsense' },
      { ...good, ts: 'soon' },
      null,
      'm1',
    ];
    expect(replies.filter(isSnapshotOf('m1'))).to.deep.equal([good]);
  });

  it('expired when its ttl ends unacked, and the status outlives the message by STATUS_SECONDS', async () => {
    const server = await start();
    const { id } = await push(server, { to: 'never', data: 'x', ttl: 0.2 });
    await until(async () => (await stateOf(server, id, 'never')) === 'expired', 'the status to say expired', 5000);
    const { body } = await statusOf(server, id);
    expect(body.uids!['never']!.history).to.have.keys('stored', 'expired');
  });

  it('broadcasts and topics: the number of sockets they were emitted to', async () => {
    const server = await start();
    const a = await connectClient('v4', server.ioUrl);
    const b = await connectClient('v2', server.ioUrl);
    await connectClient('v4', server.ioUrl);
    expect(await a.request('subscribe', 'news')).to.deep.include({ ok: true });
    expect(await b.request('subscribe', 'news')).to.deep.include({ ok: true });
    const all = await push(server, { data: 'everyone' });
    const topic = await push(server, { topic: 'news', data: 'some' });
    expect((await statusOf(server, all.id)).body).to.deep.include({ kind: 'broadcast', sockets: 3 });
    expect((await statusOf(server, topic.id)).body).to.deep.include({ kind: 'topic', topic: 'news', sockets: 2 });
  });

  it('an unknown id, and one past STATUS_SECONDS, answer 404 with a reason', async () => {
    const server = await start({ statusSeconds: 1 });
    const unknown = await statusOf(server, 'no-such-id');
    expect(unknown.status).to.equal(404);
    expect(unknown.body.error!.code).to.equal('not_found');
    expect(unknown.body.error!.message).to.match(/no status for message "no-such-id"/);
    const { id } = await push(server, { to: 'x', data: 1 });
    expect((await statusOf(server, id)).status).to.equal(200);
    await until(async () => (await statusOf(server, id)).status === 404, 'the status to be forgotten after STATUS_SECONDS', 5000);
  });

  it('at MAX_STATUS_BYTES the oldest statuses are forgotten first', async () => {
    // about 2 entries of one short uid each (STATUS_ENTRY_OVERHEAD + STATUS_UID_OVERHEAD + ids)
    const server = await start({ maxStatusBytes: 1500 });
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await push(server, { to: `u${i}`, data: i, id: `m-${i}` })).id);
    expect((await statusOf(server, ids[0]!)).status).to.equal(404);
    expect((await statusOf(server, ids[3]!)).status).to.equal(200);
  });

  it('at MAX_STATUS_BYTES keeps as many statuses as fit when a uid costs what its entry does (156-character uids, 36-character ids)', async () => {
    // a uid of this length costs as much as the bare entry of a 36-character id (a server-made
    // id): that equality once left the uid's bytes counted in the total but not in its entry, so
    // each forgotten status left them behind and fewer and fewer statuses fit
    const uidLength = (STATUS_ENTRY_OVERHEAD + 2 * 36 - STATUS_UID_OVERHEAD) / 2;
    const perStatus = STATUS_ENTRY_OVERHEAD + 2 * 36 + STATUS_UID_OVERHEAD + 2 * uidLength;
    const server = await start({ maxStatusBytes: 3 * perStatus });
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) {
      const { id } = await push(server, { to: String(i).repeat(uidLength), data: i });
      expect(id).to.have.length(36);
      ids.push(id);
    }
    const statuses = await Promise.all(ids.map(async (id) => (await statusOf(server, id)).status));
    expect(statuses).to.deep.equal([404, 404, 404, 404, 404, 200, 200, 200]);
  });

  it('a push that reuses an id past IDEMPOTENCY_SECONDS, of a topic push before, answers 200 and has a status of its own', async () => {
    const server = await start({ idempotencySeconds: 1 });
    await push(server, { topic: 'news', data: 'first', id: 'reused-id' });
    let answer: { status: number; body: { id?: string; duplicate?: boolean } } = { status: 0, body: {} };
    await until(async () => {
      const res = await fetch(`${server.apiUrl}/api/v1/push`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ to: 'u', data: 'second', id: 'reused-id' }),
      });
      answer = { status: res.status, body: (await res.json()) as typeof answer.body };
      return answer.status !== 200 || answer.body.duplicate !== true;
    }, 'the id to be forgotten', 5000, 200);
    expect(answer).to.deep.equal({ status: 200, body: { id: 'reused-id', online: [], offline: ['u'], stored: 0 } });
    const { body } = await statusOf(server, 'reused-id');
    expect(body).to.deep.include({ kind: 'uids' });
    expect(body).not.to.have.property('topic');
    expect(Object.keys(body.uids!)).to.deep.equal(['u']);
    expect(body.uids!['u']!.state).to.equal('dropped');
  });

  it('needs PUSH_SECRET: without it the route answers 403', async () => {
    const server = await startServer();
    const res = await fetch(`${server.apiUrl}/api/v1/messages/abc`);
    expect(res.status).to.equal(403);
  });

  it('with the embedded store, a stored message survives a restart but its status does not (kept in memory)', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dataDir = mkdtempSync(join(tmpdir(), 'push-status-'));
    try {
      const first = await start({ store: 'embedded', dataDir });
      const { id } = await push(first, { to: 'later', data: 'kept', ttl: 60 });
      expect(await stateOf(first, id, 'later')).to.equal('stored');
      await first.close();
      const second = await start({ store: 'embedded', dataDir });
      expect((await statusOf(second, id)).status).to.equal(404);
      const client = await page(second, 'later');
      await client.waitFor('message', (_d, meta) => (meta as { id: string }).id === id);
      // a delivery after the restart starts a new view of it
      await until(async () => (await stateOf(second, id, 'later')) === 'delivered', 'the redelivery to be recorded');
      await second.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  describe('in a cluster of two nodes on a real redis-server', function () {
    let redis: TestRedis;
    before(async function () {
      if (!REDIS_SERVER) this.skip();
      redis = await startRedis();
    });
    after(async () => redis?.close());

    it('push via node A, the page on node B acks: either node shows acked', async () => {
      const a = await start({ redisUrl: redis.url });
      const b = await start({ redisUrl: redis.url });
      const client = await page(b, 'c1');
      const { id } = await push(a, { to: 'c1', data: 'x', ttl: 60 });
      await ackMessage(client, id);
      for (const node of [a, b]) {
        await until(async () => (await stateOf(node, id, 'c1')) === 'acked', 'acked on either node');
      }
    });

    it('uids named like Object.prototype members, pushed via node A and acked on node B: either node shows each acked', async () => {
      const a = await start({ redisUrl: redis.url });
      const b = await start({ redisUrl: redis.url });
      const uids = ['constructor', 'toString', '__proto__'];
      const clients = await Promise.all(uids.map((uid) => page(b, uid)));
      const { id } = await push(a, { to: [...uids, 'plain'], data: 'x', ttl: 60 });
      for (const client of clients) await ackMessage(client, id);
      for (const node of [a, b]) {
        for (const uid of uids) await until(async () => (await stateOf(node, id, uid)) === 'acked', `${uid} acked, seen from either node`);
        const { body } = await statusOf(node, id);
        expect(Object.keys(body.uids!).sort()).to.deep.equal([...uids, 'plain'].sort());
        expect(body.uids!['plain']!.state).to.equal('stored');
      }
    });

    it('stored via node A, redelivered and acked on node B; a broadcast counts the sockets of both nodes', async () => {
      const a = await start({ redisUrl: redis.url });
      const b = await start({ redisUrl: redis.url });
      const { id } = await push(a, { to: 'c2', data: 'y', ttl: 60 });
      expect(await stateOf(b, id, 'c2')).to.equal('stored');
      const client = await page(b, 'c2');
      await ackMessage(client, id);
      await until(async () => (await stateOf(a, id, 'c2')) === 'acked', 'acked, seen from node A');
      await connectClient('v4', a.ioUrl);
      const all = await push(a, { data: 'all' });
      await until(async () => (await statusOf(b, all.id)).body.sockets === 2, 'both nodes counted');
    });
  });
});

/** What the statuses held should cost, counted again from what local() shows of each. */
function recount(snapshots: readonly StatusSnapshot[]): number {
  let bytes = 0;
  for (const s of snapshots) {
    bytes += STATUS_ENTRY_OVERHEAD + 2 * s.id.length + (s.topic === undefined ? 0 : 2 * s.topic.length);
    for (const uid of Object.keys(s.uids ?? {})) bytes += STATUS_UID_OVERHEAD + 2 * uid.length;
  }
  return bytes;
}

describe(`message status accounting (FUZZ_SEED=${SEED})`, () => {
  it('a step that grows the oldest status past MAX_STATUS_BYTES forgets the next oldest', () => {
    // three statuses of one uid each fit; a later step adds a uid to the first (a node that saw
    // only the deliveries, after a restart or on another node of a cluster)
    const one = STATUS_ENTRY_OVERHEAD + 2 + STATUS_UID_OVERHEAD + 4;
    const status = new MessageStatus({ maxBytes: 3 * one, keepMs: 60_000 });
    try {
      const keepUntil = Date.now() + 60_000;
      for (const id of ['a', 'b', 'c']) status.delivered('u1', id, keepUntil);
      status.delivered('u2', 'a', keepUntil);
      expect(status.stats()).to.deep.include({ entries: 2, bytes: 3 * one - STATUS_ENTRY_OVERHEAD - 2, forgotten: 1 });
      expect(['a', 'b', 'c'].map((id) => status.local(id) !== null)).to.deep.equal([true, false, true]);
      // a takes b's place in the order: still older than c, so the next to go
      status.delivered('u1', 'd', keepUntil);
      expect(['a', 'c', 'd'].map((id) => status.local(id) !== null)).to.deep.equal([false, true, true]);
      expect(status.stats()).to.deep.include({ entries: 2, bytes: 2 * one, forgotten: 2 });
    } finally {
      status.close();
    }
  });

  it('counts exactly what it holds through random pushes, steps, sweeps and forgetting, for random uid lengths', () => {
    const random = seededRandom(SEED);
    const int = (max: number) => Math.floor(random() * max);
    const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
    const ids = Array.from({ length: 150 }, (_, i) => `${i}-`.padEnd(1 + int(64), 'i'));
    /**
     * Random lengths up to the longest uid, many of them the length whose cost equals the bare
     * entry of `id`, and the names of Object.prototype's members (a status that dropped one
     * shows fewer uids than it counted).
     */
    const uidFor = (id: string) => {
      if (int(5) === 0) return pick(PROTOTYPE_NAMES);
      const length = int(2) === 0 ? 1 + int(256) : Math.min(256, (STATUS_ENTRY_OVERHEAD - STATUS_UID_OVERHEAD) / 2 + id.length);
      return pick(['a', 'b', 'c']).repeat(length);
    };
    const maxBytes = 2000 + int(40_000);
    const status = new MessageStatus({ maxBytes, keepMs: 60_000 });
    try {
      const check = (when: string) => {
        const held = ids.map((id) => status.local(id)).filter((s): s is StatusSnapshot => s !== null);
        const { entries, bytes } = status.stats();
        expect({ entries, bytes }, `${when}, MAX_STATUS_BYTES ${maxBytes}`).to.deep.equal({ entries: held.length, bytes: recount(held) });
        if (entries > 1) expect(bytes, when).to.be.at.most(maxBytes);
      };
      for (let op = 0; op < 4000; op++) {
        const id = pick(ids);
        const keepUntil = Date.now() + 60_000 + int(600_000);
        switch (int(6)) {
          case 0:
          case 1:
            status.toUids(id, Date.now(), keepUntil, Array.from({ length: 1 + int(4) }, () => [uidFor(id), pick(UID_STATES)] as const));
            break;
          case 2:
            status.fannedOut(id, Date.now(), int(2) === 0 ? undefined : 'topic-'.padEnd(1 + int(128), 't'), int(10), null);
            break;
          case 3:
          case 4:
            status[pick(['delivered', 'acked', 'expired'] as const)](uidFor(id), id, keepUntil);
            break;
          default:
            if (int(20) === 0) status.sweep(Date.now() + int(700_000)); // forgets those kept until before then
        }
        if (op % 50 === 49) check(`after ${op + 1} operations`);
      }
      status.sweep(Date.now() + 3_600_000);
      expect(status.stats()).to.deep.include({ entries: 0, bytes: 0 });
    } finally {
      status.close();
    }
  });
});
